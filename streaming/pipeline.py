"""The model side of a reply: conversation in, reasoning, answer text and speech out.

`ModelResponder` implements `streaming.responder.Responder` over one checkpoint, one shared
engine (so concurrent sessions share decode steps) and one TTS backend. For each response it
encodes the user's audio (cached per conversation item), builds the prompt, lets the reasoning
scheduler (`streaming.scheduler`, DESIGN section 6) run the reasoning and answer branches on the
engine in the mode of the request's reasoning effort, sends answer text to the speech stream as
it is decoded (reasoning is never spoken), and merges the two outputs (text deltas and audio
chunks) into one event stream.

Closing the generator (barge-in, `response.cancel`, a discarded speculative start) cancels the
engine sequences and the speech stream in its `finally`, so no work goes on for a reply nobody
will hear.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streaming.engine.base import Engine, SamplingParams
from streaming.model.checkpoint import LoadedModel
from streaming.model.frontend import CHUNK_SAMPLES, split_chunks
from streaming.model.prompt import Message, PromptBuilder, audio_message
from streaming.reasoning import ReplyParser
from streaming.responder import (
    AnswerDelta,
    Responder,
    ResponseEvent,
    ResponseFinished,
    ResponseRequest,
    SpeechChunk,
    Turn,
)
from streaming.scheduler import ReplyScheduler, ScheduleSettings, schedule_for
from tts.base import SpeechStream, TTSBackend

logger = logging.getLogger(__name__)

# Encoded user audio kept per 25 s chunk of each conversation item, so that a long conversation
# does not re-encode its history at every turn. Least recently used chunks go first.
AUDIO_CACHE_CHUNKS = 256


@dataclass(frozen=True)
class ResponderSettings:
    temperature: float = 0.0  # greedy by default: the embedded model is trained for it
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    max_output_tokens: int = 1024
    voice: str = "alloy"
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)  # Tc, Tr, budget


class ModelResponder(Responder):
    def __init__(self, loaded: LoadedModel, engine: Engine, tts: TTSBackend,
                 settings: ResponderSettings | None = None) -> None:
        self.loaded = loaded
        self.engine = engine
        self.tts = tts
        self.settings = settings or ResponderSettings()
        self.builder = PromptBuilder(loaded.tokenizer, loaded.special)
        self._audio_cache: collections.OrderedDict[str, torch.Tensor] = collections.OrderedDict()
        self.encoded_chunks = 0  # audio chunks run through the encoder (for tests and metrics)

    def voices(self) -> list[str]:
        return self.tts.voices()

    async def close(self) -> None:
        await self.engine.close()
        await self.tts.close()

    async def respond(self, request: ResponseRequest) -> AsyncIterator[ResponseEvent]:
        clock = StageClock()
        messages = await self._messages(request)
        clock.mark("encode")
        conversation = self.builder.build(messages, add_generation_prompt=False)
        schedule = schedule_for(request.reasoning_effort, self.settings.schedule)
        scheduler = ReplyScheduler(self.engine, self.builder, conversation, schedule,
                                   self._sampling(request), self._parser, clock.mark)
        speech = self.tts.open_stream(request.voice or self.settings.voice,
                                      request.speech_rate) if request.speak else None
        reply = _Reply(scheduler, speech, clock, input_tokens=len(conversation))
        try:
            async for event in reply.events():
                yield event
        finally:
            await reply.stop()

    def _parser(self, starts_in_reasoning: bool) -> ReplyParser:
        return ReplyParser(self.loaded.tokenizer, stop_ids=self.loaded.special.stop_ids,
                           starts_in_reasoning=starts_in_reasoning)

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

    async def prepare(self, request: ResponseRequest) -> None:
        """Encode the finished 25 s chunks of the audio so far (they are the same samples in
        the committed turn), so that at the end of a long turn only its last chunk is left.

        Prefill is not done ahead: the engine can fork a prefilled sequence only with a suffix
        of token ids, and the rest of the turn is audio embeddings."""
        for turn in request.turns:
            if turn.audio is None or turn.item_id is None:
                continue
            for index, chunk in enumerate(split_chunks(np.asarray(turn.audio, np.float32))):
                if len(chunk) == CHUNK_SAMPLES:
                    await self._encode_chunk(turn.item_id, index, chunk)

    async def _encode(self, turn: Turn) -> list[torch.Tensor]:
        assert turn.audio is not None
        chunks = split_chunks(np.asarray(turn.audio, dtype=np.float32))
        return [await self._encode_chunk(turn.item_id, index, chunk)
                for index, chunk in enumerate(chunks)]

    async def _encode_chunk(self, item_id: str | None, index: int, chunk: torch.Tensor
                            ) -> torch.Tensor:
        """One <= 25 s chunk's embeddings, cached per conversation item, chunk and length (a
        speculative start or `prepare` sees a turn before it has all its audio)."""
        key = None if item_id is None else f"{item_id}:{index}:{len(chunk)}"
        if key is not None and key in self._audio_cache:
            self._audio_cache.move_to_end(key)
            return self._audio_cache[key]
        # Encoding is model work: run it off the event loop.
        [embeds] = await asyncio.to_thread(self.loaded.model.encode_audio, chunk)
        self.encoded_chunks += 1
        if key is not None:
            self._audio_cache[key] = embeds
            while len(self._audio_cache) > AUDIO_CACHE_CHUNKS:
                self._audio_cache.popitem(last=False)
        return embeds


class StageClock:
    """Seconds from the start of a response to the first time each stage is reached."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.stages: dict[str, float] = {}

    def mark(self, stage: str) -> None:
        self.stages.setdefault(stage, time.perf_counter() - self.start)


class _Reply:
    """One response in flight: the scheduler's deltas and the speech stream, merged."""

    def __init__(self, scheduler: ReplyScheduler, speech: SpeechStream | None,
                 clock: StageClock, input_tokens: int) -> None:
        self.scheduler = scheduler
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

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.scheduler.stop()
        if self.speech is not None:
            await self.speech.cancel()

    async def _decode(self) -> None:
        async for event in self.scheduler.events():
            if isinstance(event, AnswerDelta):
                self.clock.mark("first_answer_token")
                if self.speech is not None:
                    self.speech.feed(event.text)  # the answer only: reasoning is never spoken
            else:
                self.clock.mark("first_reasoning_token")
            self.events_queue.put_nowait(event)
        if self.speech is not None:
            self.speech.flush()

    async def _speak(self) -> None:
        assert self.speech is not None
        async for chunk in self.speech:
            self.clock.mark("first_tts_chunk")
            self.events_queue.put_nowait(SpeechChunk(chunk))

    def _finished(self) -> ResponseFinished:
        scheduler = self.scheduler
        return ResponseFinished(
            status="completed" if scheduler.complete else "incomplete",
            input_tokens=self.input_tokens,
            reasoning_tokens=scheduler.reasoning_tokens,
            answer_tokens=scheduler.answer_tokens,
            stage_seconds=dict(self.clock.stages),
            mode=scheduler.schedule.mode,
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
