"""The synthesis thread pool: earliest deadline first, cancellation before and during a job."""

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("onnxruntime", reason="the pool hands out onnxruntime.RunOptions")

from tts.inference_pool import InferencePool  # noqa: E402

WAIT_S = 10.0  # generous bound for a thread hand-over on a loaded machine; never reached


@pytest.fixture
def pool() -> Iterator[InferencePool]:
    pool = InferencePool(1)
    yield pool
    pool.close()


async def _block(pool: InferencePool) -> tuple[threading.Event, asyncio.Future[Any]]:
    """Occupy the pool's only thread until the event is set."""
    release, started = threading.Event(), threading.Event()

    def hold(_: Any) -> None:
        started.set()
        release.wait(WAIT_S)

    blocker = asyncio.ensure_future(pool.run(hold, deadline=0.0))
    assert await asyncio.to_thread(started.wait, WAIT_S)
    return release, blocker


async def test_the_earliest_deadline_runs_first(pool: InferencePool) -> None:
    release, blocker = await _block(pool)
    order: list[float] = []
    jobs = [
        asyncio.ensure_future(pool.run(lambda _, d=d: order.append(d), deadline=d))
        for d in (3.0, 1.0, 2.0)
    ]
    await asyncio.sleep(0.01)  # all three queued behind the blocker
    release.set()
    await asyncio.gather(blocker, *jobs)
    assert order == [1.0, 2.0, 3.0]


async def test_a_job_cancelled_before_it_starts_never_runs(pool: InferencePool) -> None:
    release, blocker = await _block(pool)
    ran = threading.Event()
    job = asyncio.ensure_future(pool.run(lambda _: ran.set(), deadline=1.0))
    await asyncio.sleep(0.01)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    release.set()
    await blocker
    assert await pool.run(lambda _: "next", deadline=2.0) == "next"
    assert not ran.is_set()


async def test_a_running_job_is_told_to_stop_and_waited_for(pool: InferencePool) -> None:
    started, finished = threading.Event(), threading.Event()

    def run_until_terminated(options: Any) -> None:
        started.set()
        for _ in range(int(WAIT_S / 0.001)):
            if options.terminate:
                break
            threading.Event().wait(0.001)
        finished.set()

    job = asyncio.ensure_future(pool.run(run_until_terminated, deadline=0.0))
    assert await asyncio.to_thread(started.wait, WAIT_S)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert finished.is_set()  # cancel returned only once the thread was free


async def test_errors_reach_the_caller(pool: InferencePool) -> None:
    def fail(_: Any) -> None:
        raise RuntimeError("synthesis failed")

    with pytest.raises(RuntimeError, match="synthesis failed"):
        await pool.run(fail, deadline=0.0)
    assert await pool.run(lambda _: 7, deadline=0.0) == 7


async def test_a_closed_pool_refuses_jobs(pool: InferencePool) -> None:
    pool.close()
    with pytest.raises(RuntimeError, match="closed"):
        await pool.run(lambda _: None, deadline=0.0)
