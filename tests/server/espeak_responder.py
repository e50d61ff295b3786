"""A TEST responder (not a mock of the model): it answers every request with one fixed reply,
spoken by the real espeak-ng with its real word timings. It exercises the real protocol, the
audio path and truncation by word timings; the model is swapped in by replacing the `responder`
fixture in conftest.py.

It records what it was asked (`requests`) and whether each reply ran to its end or was closed
early (`finished`, `closed_early`), so tests can check that a cancel really stops the
generator. With a `gate`, it pauses after its first speech chunk until the gate opens, so that
a test can barge in mid-reply without timing races. With `pace_s` it sleeps that long after each
speech chunk, so that a reply streams for a while (as from a real TTS), also in a server process
(`--responder tests.server.espeak_responder:paced_responder`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import soxr

from streaming.responder import (
    AnswerDelta,
    ReasoningDelta,
    Responder,
    ResponseEvent,
    ResponseFinished,
    ResponseRequest,
    SpeechChunk,
)
from tts.base import SAMPLE_RATE, AudioChunk, WordTiming
from tts.espeak import synthesize

DEFAULT_REPLY = "Seven times six is forty two. That is the answer."
DEFAULT_REASONING = "I hear: seven times six. 7 * 6 = 42."
CHUNK_MS = 200  # speech chunk size, about what a clause-streaming TTS hands out
PACE_S = 0.1  # paced_responder: the default reply (~3 s of speech) streams for about 1.5 s


class FixedReplyResponder(Responder):
    def __init__(
        self,
        reply: str = DEFAULT_REPLY,
        reasoning: str = DEFAULT_REASONING,
        gate: asyncio.Event | None = None,
        fail: bool = False,
        pace_s: float = 0.0,
    ) -> None:
        self.reply = reply
        self.pace_s = pace_s
        self.reasoning = reasoning
        self.gate = gate
        self.fail = fail
        self.requests: list[ResponseRequest] = []
        self.finished = 0
        self.closed_early = 0

    def voices(self) -> list[str]:
        return ["en-us", "en-gb"]

    def respond(self, request: ResponseRequest) -> AsyncIterator[ResponseEvent]:
        return self._respond(request)

    async def _respond(self, request: ResponseRequest) -> AsyncIterator[ResponseEvent]:
        self.requests.append(request)
        done = False
        try:
            for word in self.reasoning.split(" "):
                yield ReasoningDelta(word + " ")
            if self.fail:
                raise RuntimeError("test responder asked to fail")
            if request.speak:
                async for event in self._speak(request.voice or "en-us"):
                    yield event
            else:
                for word in self.reply.split(" "):
                    yield AnswerDelta(word + " ")
            done = True  # everything is out once the last event is handed over
            yield ResponseFinished(
                input_tokens=10,
                reasoning_tokens=len(self.reasoning.split()),
                answer_tokens=len(self.reply.split()),
                stage_seconds={"first_tts_chunk": 0.01},
            )
        finally:
            if done:
                self.finished += 1
            else:
                self.closed_early += 1

    async def _speak(self, voice: str) -> AsyncIterator[ResponseEvent]:
        pcm, rate, words = await asyncio.to_thread(synthesize, self.reply, voice)
        pcm = soxr.resample(pcm, rate, SAMPLE_RATE).astype(np.int16)
        step = SAMPLE_RATE * CHUNK_MS // 1000
        said = 0  # characters of the reply sent as text so far
        for index, start in enumerate(range(0, len(pcm), step)):
            chunk_words = _words_starting_in(words, start * 1000 / SAMPLE_RATE, CHUNK_MS)
            if chunk_words:
                yield AnswerDelta(self.reply[said : chunk_words[-1].end_char])
                said = chunk_words[-1].end_char
            yield SpeechChunk(AudioChunk(pcm[start : start + step], chunk_words))
            if index == 0 and self.gate is not None:
                await self.gate.wait()
            await asyncio.sleep(self.pace_s)
        if said < len(self.reply):
            yield AnswerDelta(self.reply[said:])


def paced_responder() -> FixedReplyResponder:
    """A `--responder` factory: the default reply, streamed over about 1.5 s."""
    return FixedReplyResponder(pace_s=PACE_S)


def _words_starting_in(
    words: list[WordTiming], start_ms: float, span_ms: float
) -> list[WordTiming]:
    return [w for w in words if start_ms <= w.start_ms < start_ms + span_ms]
