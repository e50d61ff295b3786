"""An engine whose work runs on an asyncio loop of its own thread: the vLLM engine (vLLM's
`AsyncLLM`) and the remote engine (its HTTP client). Callers on any loop reach it through
`_call`; `close` stops the work (`_stop`) and then the thread. Each sequence is one request,
whose outputs a task (its pump) hands to the caller's stream; cancelling the task ends the
request. The torch engine has a plain worker thread instead and does not use this.
"""

from __future__ import annotations

import abc
import asyncio
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from streaming.engine.base import Engine
from streaming.engine.records import SequenceRecord, SequenceRecords

T = TypeVar("T")


@dataclass(eq=False, kw_only=True)
class RequestRecord(SequenceRecord):
    """A sequence and the request that runs it."""

    request_id: str
    task: asyncio.Task[None] | None = None  # the pump, while the request runs


class LoopThreadEngine(Engine):
    """Subclasses make `_records` and call `_start_loop(name)` at the end of their `__init__`,
    and implement `_start` (run on the loop at once; `warm_up` waits for it) and `_stop`. A
    request's record is `_records.start`ed with its pump and handed to `_request_ended` by it."""

    _closed: bool = True  # until `_start_loop`: closing an engine that never started is a no-op
    _loop: asyncio.AbstractEventLoop
    _thread: threading.Thread
    _started: Any  # concurrent.futures.Future[None] of `_start`
    _records: SequenceRecords[Any]  # of RequestRecord

    def _start_loop(self, name: str) -> None:
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()
        self._started = asyncio.run_coroutine_threadsafe(self._start(), self._loop)

    @abc.abstractmethod
    async def _start(self) -> None:
        """On the engine's loop: make what the engine runs on."""

    @abc.abstractmethod
    async def _stop(self) -> None:
        """On the engine's loop: end every sequence and release what `_start` made."""

    def _loop_alive(self) -> bool:
        return not self._closed and self._thread.is_alive()

    @property
    def active_sequences(self) -> int:
        return len(self._records.active)

    async def cancel(self, seq_id: int) -> None:
        if not self._closed:
            await self._call(self._cancel(seq_id))

    async def warm_up(self) -> None:
        await asyncio.wrap_future(self._started)
        await super().warm_up()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._stop(), self._loop))
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            await asyncio.to_thread(self._thread.join)

    async def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the engine's loop and wait for its result here."""
        if self._closed:
            coroutine.close()
            raise RuntimeError("the engine is closed")
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self._loop))

    # -- requests (the engine's loop) ----------------------------------------------------------

    async def _cancel(self, seq_id: int) -> None:
        record = self._records.active.get(seq_id)
        task = record.task if record is not None else None
        if task is not None:
            task.cancel()  # the pump ends the request and the stream
            await asyncio.gather(task, return_exceptions=True)

    def _request_ended(self, record: RequestRecord) -> None:
        """What a pump does last: its sequence is now only remembered, for forks."""
        record.task = None
        self._records.end(record)

    async def _cancel_requests(self) -> None:
        """Cancel every request and wait for their pumps; forget every sequence."""
        tasks = [r.task for r in self._records.active.values() if r.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._records.clear()


def post(loop: asyncio.AbstractEventLoop, callback: Any, *args: Any) -> None:
    """`callback(*args)` on a caller's `loop`, from the engine's thread; nothing if that loop
    has closed (nobody is listening)."""
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:
        pass
