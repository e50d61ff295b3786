"""Work a connection runs beside its replies: end-of-turn verdicts and user transcripts.

Both are asked for by the session machine as actions (`JudgeTurnEnd`, `Transcribe`) and
answered back into it. Neither may hold up a reply:
- the end-of-turn model runs in a small thread pool shared by all connections
  (`EndOfTurnJudge`), never on the event loop, so one session's verdict never stalls another's
  audio;
- a transcript starts once the reply to the same turn has sent its first audio (or ended), so
  its prefill never competes with the reply's first packet; a reply that has not spoken after
  `TRANSCRIPT_WAIT_SECONDS` (a long think, text only) lets it start anyway.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from server.metrics import Metrics
from server.protocol import JudgeTurnEnd, SessionMachine, Transcribe
from server.protocol.audio import MODEL_SAMPLE_RATE
from streaming.responder import Responder

log = logging.getLogger("server.turn_work")

# Smart Turn takes 10-100 ms of one core; two workers keep both cores of a small machine busy
# when many sessions pause at once, and leave the event loop free.
END_OF_TURN_WORKERS = 2
# A transcript waits at most this long for the reply to the same turn to speak first.
TRANSCRIPT_WAIT_SECONDS = 3.0

SessionCall = Callable[..., None]  # Connection._call_session: call the session, act on it


@functools.cache
def _end_of_turn_model() -> Any:
    """One end-of-turn model per process (onnxruntime's `run` is safe from several threads),
    run once on a tenth of a second of silence so that its first call's set-up is paid here:
    every server made in a process (tests make many) loads and warms it once."""
    from streaming.turns.end_of_turn import EndOfTurnModel

    model = EndOfTurnModel()
    model.probability(np.zeros(MODEL_SAMPLE_RATE // 10, np.int16))
    return model


class EndOfTurnJudge:
    """The end-of-turn model of the whole process (loaded once: at start-up where it is
    installed, server/startup.py), run off the event loop."""

    def __init__(self, workers: int = END_OF_TURN_WORKERS) -> None:
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="end-of-turn")

    def _probability(self, audio: np.ndarray) -> float:
        return float(_end_of_turn_model().probability(audio))

    async def probability(self, audio: np.ndarray) -> float:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._probability, audio)

    def warm_up(self) -> None:
        """Load and warm the model now (a second of CPU, once per process), not at the first
        user's first pause."""
        _end_of_turn_model()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class TurnWork:
    """One connection's verdicts and transcripts."""

    def __init__(
        self,
        session: SessionMachine,
        call: SessionCall,
        responder: Responder,
        judge: EndOfTurnJudge | None,
        metrics: Metrics,
        awaiting_first_audio: Callable[[str], bool],
        context: dict[str, str],
    ) -> None:
        self.session = session
        self._call = call
        self.responder = responder
        self.judge = judge
        self.metrics = metrics
        self._awaiting_first_audio = awaiting_first_audio
        self._context = context
        self._tasks: set[asyncio.Task[None]] = set()
        self._released: dict[str, asyncio.Event] = {}  # transcripts waiting on a response

    def judge_turn_end(self, action: JudgeTurnEnd) -> None:
        self._spawn(self._judge(action))

    def transcribe(self, action: Transcribe) -> None:
        self._spawn(self._transcribe(action))

    def response_spoke(self, response_id: str) -> None:
        """The response sent its first audio, or ended: transcripts waiting on it may start."""
        event = self._released.pop(response_id, None)
        if event is not None:
            event.set()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _judge(self, action: JudgeTurnEnd) -> None:
        if self.judge is None:  # no model: the eagerness cap on silence ends the turn
            return
        started = time.perf_counter()
        try:
            probability = await self.judge.probability(action.audio)
        except Exception:  # the turn still ends at the silence cap
            log.exception("end-of-turn model failed", extra=self._context)
            return
        self.metrics.end_of_turn_seconds.observe(time.perf_counter() - started)
        self._call(self.session.on_turn_verdict, action.request_id, probability, time.monotonic())

    async def _transcribe(self, action: Transcribe) -> None:
        await self._wait_for_reply(action.after_response_id)
        started = time.perf_counter()
        text = ""
        try:
            async for delta in self.responder.transcribe(action.audio, action.item_id):
                text += delta.text
                self._call(self.session.on_transcript_delta, action.item_id, delta.text)
        except NotImplementedError:
            self._failed(action.item_id, "this server's model does not transcribe")
            return
        except Exception:
            log.exception("transcription failed", extra=self._context)
            self._failed(action.item_id, "transcription failed inside the server; it is logged")
            return
        self.metrics.transcription_seconds.observe(time.perf_counter() - started)
        self.metrics.transcriptions.labels("completed").inc()
        usage = {"type": "duration", "seconds": round(len(action.audio) / MODEL_SAMPLE_RATE, 3)}
        self._call(self.session.on_transcript_done, action.item_id, text, usage)

    def _failed(self, item_id: str, message: str) -> None:
        self.metrics.transcriptions.labels("failed").inc()
        self._call(self.session.on_transcript_failed, item_id, message)

    async def _wait_for_reply(self, response_id: str | None) -> None:
        if response_id is None or not self._awaiting_first_audio(response_id):
            return
        event = self._released.setdefault(response_id, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), TRANSCRIPT_WAIT_SECONDS)
        except TimeoutError:
            self._released.pop(response_id, None)
