"""The model side of a reply: conversation in, reasoning, answer text and speech out.

`ModelResponder` implements `streaming.responder.Responder` over one checkpoint's audio side
(its audio encoder and tokenizer), one shared engine (so concurrent sessions share decode steps)
and one TTS backend; `load_responder` builds them (the engine with `streaming.engine.factory`).
A request goes straight through the pieces of `streaming.reply`: the user's audio encoded
(`audio`, cached per item), the conversation as a prompt (`prompt`, truncated where it must
be), a sequence forked from what was prefilled while the turn was spoken (`listening`), the
reasoning scheduler (`streaming.scheduler`, docs/ARCHITECTURE.md) running the reasoning and
answer branches on the engine in the mode of the request's reasoning effort, and the answer
spoken as it is decoded, merged with the text into one event stream (`stream`; reasoning is
never spoken).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from streaming.engine.base import Engine, Prompt, SamplingParams
from streaming.engine.factory import AudioSide, EngineSpec, engine_builder
from streaming.model.prompt import PromptBuilder
from streaming.reasoning import ReplyParser
from streaming.reply.audio import AudioCache
from streaming.reply.listening import ListeningAhead
from streaming.reply.prompt import ConversationPrompt
from streaming.reply.stream import ReplyStream, StageClock
from streaming.reply.transcription import transcribe
from streaming.responder import (
    Responder,
    ResponseEvent,
    ResponseRequest,
    TranscriptDelta,
    Turn,
)
from streaming.scheduler import ReplyScheduler, ScheduleSettings, schedule_for
from tts.base import TTSBackend, speak_once

if TYPE_CHECKING:
    from streaming.engine.remote_engine import RemoteOptions
    from streaming.engine.vllm_engine import VllmOptions

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResponderSettings:
    temperature: float = 0.0  # greedy by default: the embedded model is trained for it
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    max_output_tokens: int = 1024
    voice: str = "alloy"
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)  # Tc, Tr, budget


class ModelResponder(Responder):
    """Replies decoded on `engine` and spoken by `tts`; `audio_side` is what the engine does
    not hold of the checkpoint: its audio encoder, tokenizer, special ids and limits."""

    def __init__(
        self,
        audio_side: AudioSide,
        engine: Engine,
        tts: TTSBackend,
        settings: ResponderSettings | None = None,
    ) -> None:
        self.audio_side = audio_side
        self.engine = engine
        self.tts = tts
        self.settings = settings or ResponderSettings()
        self.builder = PromptBuilder(audio_side.tokenizer, audio_side.special)
        self.audio = AudioCache(audio_side.model)
        self.prompts = ConversationPrompt(self.builder, self.audio, audio_side.config)
        self.listening = ListeningAhead(engine, self.prompts)

    @property
    def encoded_chunks(self) -> int:
        return self.audio.encoded_chunks

    def voices(self) -> list[str]:
        return self.tts.voices()

    async def close(self) -> None:
        await self.engine.close()
        await self.tts.close()

    async def warm_up(self) -> None:
        """Start and warm up the engine, and speak a word with the TTS backend (its first
        synthesis paid, and checked); the server turns ready after this. Raises where either
        cannot serve."""
        await self.engine.warm_up()
        await speak_once(self.tts)

    def engine_status(self) -> dict[str, object]:
        """The engine's health and capacity, for `/readyz` (and a balancer, see docs/scaling.md)."""
        capacity = self.engine.capacity
        return {
            "healthy": self.engine.healthy,
            "active_sequences": self.engine.active_sequences,
            "max_sequences": capacity.max_sequences,
            "max_cached_tokens": capacity.max_cached_tokens,
            "max_context": capacity.max_context,
        }

    async def respond(self, request: ResponseRequest) -> AsyncIterator[ResponseEvent]:
        clock = StageClock()
        conversation = await self._conversation(request)
        clock.mark("encode")
        scheduler = ReplyScheduler(
            self.engine,
            self.builder,
            conversation,
            schedule_for(request.reasoning_effort, self.settings.schedule),
            self._sampling(request),
            self._parser,
            clock.mark,
            submit=self.listening.submit,
        )
        speech = (
            self.tts.open_stream(request.voice or self.settings.voice, request.speech_rate)
            if request.speak
            else None
        )
        tools = {str(tool.get("name")) for tool in request.tools}
        reply = ReplyStream(scheduler, speech, clock, input_tokens=len(conversation), tools=tools)
        try:
            async for event in reply.events():
                yield event
        finally:
            await reply.stop()

    async def prepare(self, request: ResponseRequest) -> None:
        """Listen ahead on a turn still being spoken (`streaming.reply.listening`)."""
        await self.listening.prepare(request)

    async def transcribe(
        self, audio: np.ndarray, item_id: str | None = None
    ) -> AsyncIterator[TranscriptDelta]:
        """The served model's transcription of the turn's audio, which the reply has usually
        encoded already (cached by item id)."""
        chunks = await self.audio.encode(Turn("user", audio=audio, item_id=item_id))
        special = self.audio_side.special
        async for delta in transcribe(
            self.engine, self.builder, self.audio_side.tokenizer, special.stop_ids, chunks
        ):
            yield delta

    async def _conversation(self, request: ResponseRequest) -> Prompt:
        """The prompt up to the assistant turn, within the model's context (or the engine's,
        if smaller) beside the reply."""
        context = min(self.audio_side.config.context_tokens, self.engine.capacity.max_context)
        return await self.prompts.build(request, context, self._sampling(request).max_tokens)

    def _parser(self, starts_in_reasoning: bool) -> ReplyParser:
        return ReplyParser(
            self.audio_side.tokenizer,
            stop_ids=self.audio_side.special.stop_ids,
            starts_in_reasoning=starts_in_reasoning,
        )

    def _sampling(self, request: ResponseRequest) -> SamplingParams:
        s = self.settings
        return SamplingParams(
            temperature=s.temperature if request.temperature is None else request.temperature,
            top_p=s.top_p,
            repetition_penalty=s.repetition_penalty,
            max_tokens=request.max_output_tokens or s.max_output_tokens,
            stop_ids=self.audio_side.special.stop_ids,
        )


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device_dtype(
    device: str = "auto", dtype: str = "auto"
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


def load_responder(
    model_path: str | Path | None = None,
    *,
    device: str = "auto",
    dtype: str = "auto",
    max_sequences: int = 16,
    max_seq_len: int = 4096,
    tts_backend: str = "espeak",
    tts_voice_path: str | Path | None = None,
    settings: ResponderSettings | None = None,
    engine: str = "torch",
    vllm_options: VllmOptions | None = None,
    remote_options: RemoteOptions | None = None,
) -> ModelResponder:
    """Checkpoint + engine + TTS backend, ready to answer. No path: the default model.

    `engine` names a builder of `streaming.engine.factory` (see there what each loads here):
    "torch", our decoding loop; "vllm", vLLM in this process (`vllm_options`); "remote", a vLLM
    server elsewhere (`remote_options`, its url required). The vLLM engines' limits default to
    `max_sequences` and `max_seq_len`, their dtype "auto" to the torch engine's here.
    """
    from streaming.default_model import default_checkpoint
    from tts import get_backend

    build = engine_builder(engine)  # an unknown name is refused before anything is resolved
    path = Path(model_path) if model_path is not None else default_checkpoint()
    torch_device, torch_dtype = resolve_device_dtype(device, dtype)
    spec = EngineSpec(
        path,
        torch_device,
        torch_dtype,
        max_sequences=max_sequences,
        max_seq_len=max_seq_len,
        vllm_options=vllm_options,
        remote_options=remote_options,
    )
    decoder, audio_side = build(spec)
    logger.info("loaded %s on %s (%s), %s engine", path, torch_device, torch_dtype, engine)
    tts = get_backend(tts_backend, voice_path=tts_voice_path)
    return ModelResponder(audio_side, decoder, tts, settings)
