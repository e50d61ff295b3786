"""Worker processes, each with its own espeak-ng instance, shared by every speech stream.

espeak-ng keeps global state and is not thread-safe, so concurrency comes from processes: each
worker runs one `Espeak` and synthesises one job (a clause) at a time, sending every audio buffer
back through its pipe as soon as espeak produces it. Streams take a worker per clause, not per
response, so sixteen sessions share a few workers fairly (first come, first served) and none
holds a worker while it waits for more text. While a job runs, the event loop of the stream
that owns it reads the worker's socket (add_reader), so the loop never blocks on a pipe.

Cancelling a job sends `cancel` down the pipe; the worker checks for it after every buffer and
aborts espeak from the synth callback, then answers `done`: from then on the worker is free.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import subprocess
import sys
import threading
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from tts.espeak import Espeak, WordEvent

DEFAULT_MAX_WORKERS = 4  # espeak runs hundreds of times faster than real time: a few suffice
_PROJECT_ROOT = str(Path(__file__).resolve().parents[1])
WORKER_STOP_TIMEOUT_S = 2.0  # a worker answers `stop` between jobs; past this it is killed


@dataclass(frozen=True)
class SynthJob:
    text: str
    voice: str
    rate_wpm: int
    pitch: int
    end_pause: bool = True  # the pause espeak adds after a sentence; off mid-sentence


class SynthFailed(RuntimeError):
    pass


def _worker_main(conn: Connection) -> None:
    """Worker process: serve jobs from the pipe until `stop` or the pipe closes."""
    engine = Espeak()
    stopping = False

    def interrupted(job_id: int) -> bool:
        nonlocal stopping
        while conn.poll():
            message = conn.recv()
            if message[0] == "stop":
                stopping = True
            if stopping or (message[0] == "cancel" and message[1] == job_id):
                return True
        return False

    while not stopping:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message[0] == "stop":
            return
        if message[0] != "synth":
            continue  # a cancel that arrived after its job finished
        _, job_id, job = message

        def on_audio(pcm: np.ndarray, words: list[WordEvent], job_id: int = job_id) -> bool:
            events = [(w.start, w.length, w.sample) for w in words]
            conn.send(("audio", job_id, pcm.tobytes(), events))
            return interrupted(job_id)

        error = None
        try:
            engine.configure(job.voice, job.rate_wpm, job.pitch)
            completed = engine.synth(job.text, on_audio, job.end_pause)
        except Exception as exc:  # reported to the stream, the worker lives on
            completed, error = False, f"{type(exc).__name__}: {exc}"
        conn.send(("done", job_id, completed, error))


class _Worker:
    def __init__(self) -> None:
        # A fresh interpreter (`python -m tts.espeak_pool FD`), not multiprocessing: no fork of a
        # threaded server and no re-import of the caller's __main__.
        parent_sock, child_sock = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PROJECT_ROOT, env.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tts.espeak_pool", str(child_sock.fileno())],
            pass_fds=[child_sock.fileno()],
            env=env,
        )
        child_sock.close()
        self.conn = Connection(parent_sock.detach())
        self.alive = True

    def stop(self) -> None:
        try:
            self.conn.send(("stop",))
        except OSError:
            pass
        try:
            self.process.wait(WORKER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.conn.close()


class SynthRun:
    """One job on one worker: iterate for (pcm int16 22.05 kHz, word events) per buffer.

    The worker's socket is watched by the owner's event loop only while the job runs, so
    messages are read where they are used (no reader thread, no GIL hand-offs), and a pool
    can serve streams on different loops.
    """

    def __init__(self, pool: EspeakPool, worker: _Worker, job_id: int, job: SynthJob) -> None:
        self._pool, self._worker, self._job_id = pool, worker, job_id
        self._loop = asyncio.get_running_loop()
        self._messages: asyncio.Queue[tuple] = asyncio.Queue()
        self._finished = False
        self._loop.add_reader(worker.conn.fileno(), self._on_readable)
        try:
            worker.conn.send(("synth", job_id, job))
        except OSError:
            self._worker_lost()

    def _worker_lost(self) -> None:
        self._worker.alive = False
        self._loop.remove_reader(self._worker.conn.fileno())
        self._messages.put_nowait(("done", self._job_id, False, "espeak worker exited"))

    def _on_readable(self) -> None:
        try:
            while self._worker.conn.poll():
                message = self._worker.conn.recv()
                if message[1] == self._job_id:
                    self._messages.put_nowait(message)
        except (EOFError, OSError):
            self._worker_lost()

    def __aiter__(self) -> AsyncIterator[tuple[np.ndarray, list[WordEvent]]]:
        return self._buffers()

    async def _buffers(self) -> AsyncIterator[tuple[np.ndarray, list[WordEvent]]]:
        while not self._finished:
            message = await self._messages.get()
            if message[0] == "done":
                self._finished = True
                if message[3] is not None:
                    raise SynthFailed(message[3])
                return
            _, _, pcm, events = message
            yield np.frombuffer(pcm, dtype=np.int16), [WordEvent(*e) for e in events]

    async def cancel(self) -> None:
        """Abort the job and wait until the worker is free again."""
        if not self._finished and self._worker.alive:
            try:
                self._worker.conn.send(("cancel", self._job_id))
            except OSError:
                self._worker_lost()
            while not self._finished:
                message = await self._messages.get()
                self._finished = message[0] == "done"
        self._finished = True

    async def __aenter__(self) -> SynthRun:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await asyncio.shield(self.cancel())
        finally:
            if self._worker.alive:
                self._loop.remove_reader(self._worker.conn.fileno())
            self._pool.release(self._worker)


class EspeakPool:
    """A fixed set of espeak worker processes; `async with await pool.synth(job) as run`."""

    def __init__(self, max_workers: int | None = None) -> None:
        self.size = max_workers or min(DEFAULT_MAX_WORKERS, os.cpu_count() or 1)
        self._idle: deque[_Worker] = deque(_Worker() for _ in range(self.size))
        self._waiters: deque[asyncio.Future[_Worker]] = deque()
        self._lock = threading.Lock()  # streams may live on different event loops
        self._job_ids = itertools.count(1)
        self._closed = False

    async def synth(self, job: SynthJob) -> SynthRun:
        """Wait for a free worker and start `job` on it."""
        worker = await self._acquire()
        return SynthRun(self, worker, next(self._job_ids), job)

    async def _acquire(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise RuntimeError("the espeak pool is closed")
            if self._idle:
                return self._idle.popleft()
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
        try:
            return await waiter  # a cancelled waiter is skipped by `release`
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(waiter.result())  # handed over just as we were cancelled
            raise

    def release(self, worker: _Worker) -> None:
        if self._closed:
            worker.stop()  # a job that outlived `close`
            return
        if not worker.alive:
            worker.stop()
            worker = _Worker()
        with self._lock:
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.get_loop().call_soon_threadsafe(self._hand_over, waiter, worker)
                    return
            self._idle.append(worker)

    def _hand_over(self, waiter: asyncio.Future[_Worker], worker: _Worker) -> None:
        if waiter.done():  # cancelled between release and now: give the worker to the next
            self.release(worker)
        else:
            waiter.set_result(worker)

    def close(self) -> None:
        """Stop the workers: idle ones now, busy ones when their job ends."""
        with self._lock:
            self._closed = True
            workers, self._idle = list(self._idle), deque()
        for worker in workers:
            worker.stop()


if __name__ == "__main__":
    _worker_main(Connection(int(sys.argv[1])))
