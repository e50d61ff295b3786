"""Worker threads shared by every speech stream, running the most urgent job first.

Neural synthesis costs real CPU time (about 0.08 s per second of audio on one core for a Piper
medium voice), so sixteen sessions on two cores only all stay ahead of real time if the cores go
where audio is about to run out. Every job carries a deadline, the wall-clock time at which its
stream's listener would run out of audio (now, for a stream with no audio yet), and the free
thread takes the earliest (EDF). A stream submits one job at a time (a clause's encoding, then
one window of its audio after another), so long answers never hold a thread for long.

onnxruntime releases the GIL while it runs, so threads are enough (the event loop stays free).
A job that is cancelled before it starts is dropped; one that runs is told to stop through its
`onnxruntime.RunOptions` (`terminate`), and its stream waits until the thread is free again.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")
JOIN_TIMEOUT_S = 5.0  # `close` waits this long for a running job; the threads are daemons


@dataclass(order=True)
class _Job(Generic[T]):
    deadline: float
    sequence: int
    run: Callable[[Any], T] = field(compare=False)
    run_options: Any = field(compare=False)
    loop: asyncio.AbstractEventLoop = field(compare=False)
    done: asyncio.Future[T] = field(compare=False)
    dropped: bool = field(default=False, compare=False)
    started: bool = field(default=False, compare=False)


class InferencePool:
    """`await pool.run(fn, deadline)`: fn(run_options) on a worker thread, earliest deadline
    first."""

    def __init__(self, workers: int | None = None) -> None:
        import onnxruntime

        self._run_options = onnxruntime.RunOptions
        self.size = workers or os.cpu_count() or 1
        self._queue: list[_Job[Any]] = []
        self._ready = threading.Condition()
        self._sequence = itertools.count()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"tts-inference-{i}", daemon=True)
            for i in range(self.size)
        ]
        for thread in self._threads:
            thread.start()

    async def run(self, fn: Callable[[Any], T], deadline: float) -> T:
        """Run `fn(run_options)`; on cancellation stop it and wait until its thread is free."""
        loop = asyncio.get_running_loop()
        job: _Job[T] = _Job(
            deadline, next(self._sequence), fn, self._run_options(), loop, loop.create_future()
        )
        with self._ready:
            if self._closed:
                raise RuntimeError("the inference pool is closed")
            heapq.heappush(self._queue, job)
            self._ready.notify()
        try:
            return await asyncio.shield(job.done)
        except asyncio.CancelledError:
            await self._abort(job)
            raise

    async def _abort(self, job: _Job[Any]) -> None:
        with self._ready:
            job.dropped = True  # not started yet: the worker skips it
            job.run_options.terminate = True  # started: onnxruntime stops between nodes
            started = job.started
        if started:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.shield(job.done)  # the aborted run's error is expected

    def _work(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._closed:
                    self._ready.wait()
                if self._closed and not self._queue:
                    return
                job = heapq.heappop(self._queue)
                if job.dropped:
                    _settle(job, None, None, cancelled=True)
                    continue
                job.started = True
            try:
                result, error = job.run(job.run_options), None
            except BaseException as exc:  # handed to the awaiting stream
                result, error = None, exc
            _settle(job, result, error)

    def close(self) -> None:
        """Finish the queued jobs' waiters and stop the threads."""
        with self._ready:
            self._closed = True
            for job in self._queue:
                job.dropped = True
            self._ready.notify_all()
        for thread in self._threads:
            thread.join(JOIN_TIMEOUT_S)


def _settle(
    job: _Job[Any], result: Any, error: BaseException | None, cancelled: bool = False
) -> None:
    def settle() -> None:
        if job.done.done():
            return
        if cancelled:
            job.done.cancel()
        elif error is not None:
            job.done.set_exception(error)
        else:
            job.done.set_result(result)

    if not job.loop.is_closed():
        job.loop.call_soon_threadsafe(settle)
