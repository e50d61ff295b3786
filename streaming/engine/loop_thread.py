"""An engine whose work runs on an asyncio loop of its own thread: the vLLM engine (vLLM's
`AsyncLLM`) and the remote engine (its HTTP client). Callers on any loop reach it through
`_call`; `close` stops the work (`_stop`) and then the thread. The torch engine has a plain
worker thread instead and does not use this.
"""

from __future__ import annotations

import abc
import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, Self, TypeVar

from streaming.engine.base import Engine

T = TypeVar("T")


class LoopThreadEngine(Engine):
    """Subclasses call `_start_loop(name)` at the end of their `__init__`, and implement
    `_start` (run on the loop at once; `warm_up` waits for it) and `_stop`."""

    _closed: bool = True  # until `_start_loop`: closing an engine that never started is a no-op
    _loop: asyncio.AbstractEventLoop
    _thread: threading.Thread
    _started: Any  # concurrent.futures.Future[None] of `_start`

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

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the engine's loop and wait for its result here."""
        if self._closed:
            coroutine.close()
            raise RuntimeError("the engine is closed")
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self._loop))


def post(loop: asyncio.AbstractEventLoop, callback: Any, *args: Any) -> None:
    """`callback(*args)` on a caller's `loop`, from the engine's thread; nothing if that loop
    has closed (nobody is listening)."""
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:
        pass
