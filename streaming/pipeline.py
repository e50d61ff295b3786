"""The model side of a reply: conversation in, reasoning, answer text and speech out.

`ModelResponder` implements `streaming.responder.Responder` over one checkpoint, one shared
engine (so concurrent sessions share decode steps) and one TTS backend. For each response it
encodes the user's audio (cached per conversation item), builds the R1 prompt, streams the
engine's tokens through the reasoning parser, sends answer text to the speech stream as it is
decoded, and merges the two outputs (text deltas and audio chunks) into one event stream.

Closing the generator (barge-in, `response.cancel`) cancels the engine sequence and the speech
stream in its `finally`, so no work goes on for a reply nobody will hear.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streaming.engine.base import Engine, SamplingParams, TokenStream
from streaming.model.checkpoint import LoadedModel
from streaming.model.prompt import Message, PromptBuilder, audio_message
from streaming.reasoning import ReplyDelta, ReplyParser
from streaming.responder import (
    AnswerDelta,
    ReasoningDelta,
    Responder,
    ResponseEvent,
    ResponseFinished,
    ResponseRequest,
    SpeechChunk,
    Turn,
)
from tts.base import SpeechStream, TTSBackend

logger = logging.getLogger(__name__)

# Encoded user audio kept per conversation item, so a long conversation does not re-encode its
# history at every turn. Least recently used entries go first.
AUDIO_CACHE_ITEMS = 256


@dataclass(frozen=True)
class ResponderSettings:
    temperature: float = 0.0  # greedy by default: the embedded model is trained for it
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    max_output_tokens: int = 1024
    voice: str = "alloy"


class ModelResponder(Responder):
    def __init__(self, loaded: LoadedModel, engine: Engine, tts: TTSBackend,
                 settings: ResponderSettings | None = None) -> None:
        self.loaded = loaded
        self.engine = engine
        self.tts = tts
        self.settings = settings or ResponderSettings()
        self.builder = PromptBuilder(loaded.tokenizer, loaded.special)
        self._audio_cache: collections.OrderedDict[str, list[torch.Tensor]] = (
            collections.OrderedDict()
        )

    def voices(self) -> list[str]:
        return self.tts.voices()

    async def close(self) -> None:
        await self.engine.close()
        await self.tts.close()

    async def respond(self, request: ResponseRequest) -> AsyncIterator[ResponseEvent]:
        clock = _StageClock()
        messages = await self._messages(request)
        clock.mark("encode")
        thinks = request.reasoning_effort != "minimal"  # TODO(scheduler): the other modes
        prompt = self.builder.build(messages, add_generation_prompt=False)
        prompt.token_ids += self.builder.assistant_prefix(None if thinks else "")
        speech = self.tts.open_stream(request.voice or self.settings.voice,
                                      request.speech_rate) if request.speak else None
        stream = await self.engine.submit(prompt, self._sampling(request))
        reply = _Reply(self.loaded, stream, speech, clock, input_tokens=len(prompt),
                       starts_in_reasoning=thinks)
        try:
            async for event in reply.events():
                yield event
        finally:
            await reply.stop(self.engine)

    def _sampling(self, request: ResponseRequest) -> SamplingParams:
        s = self.settings
        return SamplingParams(
            temperature=s.temperature if request.temperature is None else request.temperature,
            top_p=s.top_p,
            repetition_penalty=s.repetition_penalty,
            max_tokens=request.max_output_tokens or s.max_output_tokens,
            stop_ids=self.loaded.special.stop_ids,
        )

    async def _messages(self, request: ResponseRequest) -> list[Message]:
        messages = [Message("system", request.instructions)] if request.instructions else []
        for turn in request.turns:
            messages.append(await self._message(turn))
        return messages

    async def _message(self, turn: Turn) -> Message:
        if turn.audio is None:
            return Message(turn.role, turn.text or "")
        if turn.role != "user":
            raise ValueError(f"only user turns may carry audio, not {turn.role!r}")
        return audio_message(await self._encode(turn), text=turn.text)

    async def _encode(self, turn: Turn) -> list[torch.Tensor]:
        # The length is part of the key: a speculative start encodes an item's audio before the
        # turn has all of it.
        key = None if turn.item_id is None else f"{turn.item_id}:{len(turn.audio)}"
        if key is not None and key in self._audio_cache:
            self._audio_cache.move_to_end(key)
            return self._audio_cache[key]
        wave = np.asarray(turn.audio, dtype=np.float32)
        # Encoding is model work: run it off the event loop.
        chunks = await asyncio.to_thread(self.loaded.model.encode_audio, wave)
        if key is not None:
            self._audio_cache[key] = chunks
            while len(self._audio_cache) > AUDIO_CACHE_ITEMS:
                self._audio_cache.popitem(last=False)
        return chunks


class _StageClock:
    """Seconds from the start of a response to the first time each stage is reached."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.stages: dict[str, float] = {}

    def mark(self, stage: str) -> None:
        self.stages.setdefault(stage, time.perf_counter() - self.start)


class _Reply:
    """One response in flight: the token stream and the speech stream, merged into events."""

    def __init__(self, loaded: LoadedModel, stream: TokenStream, speech: SpeechStream | None,
                 clock: _StageClock, input_tokens: int, starts_in_reasoning: bool) -> None:
        self.parser = ReplyParser(loaded.tokenizer, stop_ids=loaded.special.stop_ids,
                                  starts_in_reasoning=starts_in_reasoning)
        self.reasoning_tokens = 0
        self.answer_tokens = 0
        self.stream = stream
        self.speech = speech
        self.clock = clock
        self.input_tokens = input_tokens
        # Events from both producers; None marks one producer's end, an exception its failure.
        self.events_queue: asyncio.Queue[ResponseEvent | Exception | None] = asyncio.Queue()
        self.tasks: list[asyncio.Task[None]] = []

    async def events(self) -> AsyncIterator[ResponseEvent]:
        producers = [self._decode()] + ([self._speak()] if self.speech else [])
        self.tasks = [asyncio.create_task(self._produce(p)) for p in producers]
        running = len(self.tasks)
        while running:
            event = await self.events_queue.get()
            if event is None:
                running -= 1
            elif isinstance(event, Exception):
                raise event
            else:
                yield event
        yield self._finished()

    async def _produce(self, producer: Coroutine[Any, Any, None]) -> None:
        try:
            await producer
        except Exception as error:  # handed to the consumer, which raises it
            self.events_queue.put_nowait(error)
        else:
            self.events_queue.put_nowait(None)

    async def stop(self, engine: Engine) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.stream.output.finish_reason is None:
            await engine.cancel(self.stream.seq_id)
        if self.speech is not None:
            await self.speech.cancel()

    async def _decode(self) -> None:
        async for token in self.stream:
            self.clock.mark("prefill")  # time to the first generated token
            if self.parser.in_answer:
                self.answer_tokens += 1
            else:
                self.reasoning_tokens += 1
            self._emit(self.parser.push(token))
        self._emit(self.parser.finish())
        if self.speech is not None:
            self.speech.flush()

    def _emit(self, delta: ReplyDelta) -> None:
        if delta.reasoning:
            self.clock.mark("first_reasoning_token")
            self.events_queue.put_nowait(ReasoningDelta(delta.reasoning))
        if delta.answer:
            self.clock.mark("first_answer_token")
            self.events_queue.put_nowait(AnswerDelta(delta.answer))
            if self.speech is not None:
                self.speech.feed(delta.answer)

    async def _speak(self) -> None:
        assert self.speech is not None
        async for chunk in self.speech:
            self.clock.mark("first_tts_chunk")
            self.events_queue.put_nowait(SpeechChunk(chunk))

    def _finished(self) -> ResponseFinished:
        output = self.stream.output
        complete = output.finish_reason == "stop"
        return ResponseFinished(
            status="completed" if complete else "incomplete",
            input_tokens=self.input_tokens,
            reasoning_tokens=self.reasoning_tokens,
            answer_tokens=self.answer_tokens,
            stage_seconds=dict(self.clock.stages),
        )



DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device_dtype(device: str = "auto", dtype: str = "auto"
                         ) -> tuple[torch.device, torch.dtype]:
    """`auto`: CUDA with bfloat16 where present, else CPU with float32 (fast CPU matmuls)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolved = torch.device(device)
    if dtype == "auto":
        return resolved, torch.bfloat16 if resolved.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; valid: auto, {', '.join(DTYPES)}")
    return resolved, DTYPES[dtype]


def load_responder(model_path: str | Path | None = None, *, device: str = "auto",
                   dtype: str = "auto", max_sequences: int = 16, max_seq_len: int = 4096,
                   tts_backend: str = "espeak",
                   settings: ResponderSettings | None = None) -> ModelResponder:
    """Checkpoint + torch engine + TTS backend, ready to answer. No path: the default model."""
    from streaming.default_model import default_checkpoint
    from streaming.engine.torch_engine import TorchEngine
    from streaming.model.checkpoint import load_checkpoint
    from tts import get_backend

    path = Path(model_path) if model_path is not None else default_checkpoint()
    torch_device, torch_dtype = resolve_device_dtype(device, dtype)
    loaded = load_checkpoint(path, dtype=torch_dtype, device=torch_device)
    engine = TorchEngine(loaded.model.model, loaded.model.lm_head, max_slots=max_sequences,
                         max_seq_len=max_seq_len)
    logger.info("loaded %s on %s (%s)", path, torch_device, torch_dtype)
    return ModelResponder(loaded, engine, get_backend(tts_backend), settings)
