"""The model side of a reply: conversation in, reasoning, answer text and speech out.

`ModelResponder` implements `streaming.responder.Responder` over one checkpoint's audio side
(its audio encoder and tokenizer), one shared engine (so concurrent sessions share decode steps)
and one TTS backend; `load_responder` builds them (the engine with `streaming.engine.factory`).
For each response it encodes the user's audio (cached per conversation item), builds the
prompt, lets the reasoning scheduler (`streaming.scheduler`, docs/ARCHITECTURE.md) run the
reasoning and answer branches on the engine in the mode of the request's reasoning effort, sends
answer text to the speech stream as it is decoded (reasoning is never spoken), and merges the
two outputs (text deltas and audio chunks) into one event stream.

Listening ahead (`prepare`, called every 25 s of a turn still being spoken): the finished 25 s
chunks are encoded, and a "listening" sequence prefills the conversation and the turn up to the
end of the last finished chunk. The response then forks it with the rest of the turn (the last
chunk and the turn's end) as the suffix, so the work left when a long turn ends does not grow
with its length.

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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from streaming.engine.base import Engine, EngineError, Prompt, SamplingParams, TokenStream
from streaming.engine.factory import AudioSide, EngineSpec, engine_builder
from streaming.model.frontend import CHUNK_SAMPLES, split_chunks
from streaming.model.prompt import Message, PromptBuilder, audio_message
from streaming.reasoning import IncrementalDetokenizer, ReplyParser
from streaming.responder import (
    AnswerDelta,
    InvalidToolCall,
    Responder,
    ResponseEvent,
    ResponseFinished,
    ResponseRefused,
    ResponseRequest,
    SpeechChunk,
    ToolCallDelta,
    ToolCalled,
    TranscriptDelta,
    Turn,
)
from streaming.scheduler import ReplyScheduler, ScheduleSettings, schedule_for
from streaming.tool_calls import ParsedDelta, ToolCallError, ToolCallParser
from tts.base import SpeechStream, TTSBackend, speak_once

if TYPE_CHECKING:
    from streaming.engine.remote_engine import RemoteOptions
    from streaming.engine.vllm_engine import VllmOptions

logger = logging.getLogger(__name__)

# Encoded user audio kept per 25 s chunk of each conversation item, so that a long conversation
# does not re-encode its history at every turn. Least recently used chunks go first.
AUDIO_CACHE_CHUNKS = 256
# Listening sequences kept, one per turn being spoken, least recently prepared first out: one per
# session that is listening. Each costs a prompt here and, in the engine, a free slot that keeps
# its keys/values until another sequence needs it.
LISTENING_TURNS = 16
# A listening sequence is only prefilled; its one generated token is never read.
LISTEN = SamplingParams(max_tokens=1)
# A transcript is the words of one turn: Whisper's own cap on the tokens of a 30 s window.
TRANSCRIPT_MAX_TOKENS = 448
# Positions kept free beside the prompt and the reply: the scheduler's answer segments add the
# `</think>` line and a newline to the reasoning they are conditioned on.
PROMPT_SLACK = 8


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
        self._audio_cache: collections.OrderedDict[str, torch.Tensor] = collections.OrderedDict()
        self.encoded_chunks = 0  # audio chunks run through the encoder (for tests and metrics)
        self._listening: collections.OrderedDict[str, _Listening] = collections.OrderedDict()

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
        schedule = schedule_for(request.reasoning_effort, self.settings.schedule)
        scheduler = ReplyScheduler(
            self.engine,
            self.builder,
            conversation,
            schedule,
            self._sampling(request),
            self._parser,
            clock.mark,
            submit=self._submit,
        )
        speech = (
            self.tts.open_stream(request.voice or self.settings.voice, request.speech_rate)
            if request.speak
            else None
        )
        tools = {str(tool.get("name")) for tool in request.tools}
        reply = _Reply(scheduler, speech, clock, input_tokens=len(conversation), tools=tools)
        try:
            async for event in reply.events():
                yield event
        finally:
            await reply.stop()

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

    async def _conversation(self, request: ResponseRequest) -> Prompt:
        """The prompt up to the assistant turn, with the oldest exchanges left out where the
        model's context or its trained history would be exceeded (`request.truncation`)."""
        messages = await self._messages(request)
        lead = 1 if request.instructions else 0
        fixed = len(
            self.builder.build(messages[:lead], tools=request.tools, add_generation_prompt=False)
        )
        exchanges = _exchanges(messages[lead:])
        lengths = [
            sum(len(self.builder.build([m], add_generation_prompt=False)) for m in ex)
            for ex in exchanges
        ]
        drop = self._exchanges_to_drop(request, fixed, lengths)
        kept = [message for exchange in exchanges[drop:] for message in exchange]
        if drop:
            logger.info("conversation truncated: %d oldest exchanges left out", drop)
        return self.builder.build(
            [*messages[:lead], *kept], tools=request.tools, add_generation_prompt=False
        )

    def _exchanges_to_drop(self, request: ResponseRequest, fixed: int, lengths: list[int]) -> int:
        """How many of the oldest exchanges leave the context (the live one always stays)."""
        room = self._context_limit() - self._sampling(request).max_tokens - PROMPT_SLACK
        history_turns = self.audio_side.config.max_history_turns
        needed = 0
        while fixed + sum(lengths[needed:]) > room or (
            history_turns is not None and len(lengths) - needed - 1 > history_turns
        ):
            needed += 1
            if needed >= len(lengths):
                raise ResponseRefused(
                    "context_length_exceeded",
                    f"the instructions, tools and the last turn take {fixed + lengths[-1]} "
                    f"tokens; the model has room for {room} beside max_output_tokens "
                    f"{self._sampling(request).max_tokens}: shorten them",
                )
        truncation = request.truncation
        if needed and truncation.type == "disabled":
            raise ResponseRefused(
                "context_length_exceeded",
                f"the conversation takes {fixed + sum(lengths)} tokens and the model has room "
                f"for {room}, and truncation is disabled: delete items or enable truncation",
            )
        if needed and truncation.type == "retention_ratio":
            target = room * truncation.retention_ratio
            while needed < len(lengths) - 1 and fixed + sum(lengths[needed:]) > target:
                needed += 1
        return needed

    def _context_limit(self) -> int:
        """Positions a sequence may hold: the model's context, or the engine's, if smaller."""
        limit = self.audio_side.config.context_tokens
        return min(limit, self.engine.capacity.max_context)

    async def _messages(self, request: ResponseRequest) -> list[Message]:
        messages = [Message("system", request.instructions)] if request.instructions else []
        for turn in request.turns:
            message = await self._message(turn)
            previous = messages[-1] if messages else None
            if turn.role == "assistant" and previous is not None and previous.role == "assistant":
                # a reply's spoken part and its tool calls are one assistant turn
                message = Message(
                    "assistant",
                    f"{previous.content}{message.content}",
                    tool_calls=[*previous.tool_calls, *message.tool_calls],
                )
                messages[-1] = message
            else:
                messages.append(message)
        return messages

    async def _message(self, turn: Turn) -> Message:
        if turn.audio is None:
            return Message(turn.role, turn.text or "", tool_calls=turn.tool_calls, name=turn.name)
        if turn.role != "user":
            raise ValueError(f"only user turns may carry audio, not {turn.role!r}")
        return audio_message(await self._encode(turn), text=turn.text)

    async def transcribe(
        self, audio: np.ndarray, item_id: str | None = None
    ) -> AsyncIterator[TranscriptDelta]:
        """The served model's ASR task (`PromptBuilder.transcription`) over the turn's audio,
        which the reply has usually encoded already (cached by item id)."""
        chunks = await self._encode(Turn("user", audio=audio, item_id=item_id))
        prompt = self.builder.transcription(chunks)
        params = SamplingParams(
            max_tokens=TRANSCRIPT_MAX_TOKENS, stop_ids=self.audio_side.special.stop_ids
        )
        stream = await self.engine.submit(prompt, params)
        detokenizer = IncrementalDetokenizer(self.audio_side.tokenizer)
        stops = set(params.stop_ids)
        started = False
        try:
            async for token in stream:
                if token in stops:
                    break
                text = detokenizer.push(token)
                if not started:
                    text = text.lstrip()
                    started = bool(text)
                if text:
                    yield TranscriptDelta(text)
        finally:
            if stream.output.finish_reason is None:
                await self.engine.cancel(stream.seq_id)

    async def prepare(self, request: ResponseRequest) -> None:
        """Encode the finished 25 s chunks of the turn being spoken (they are the same samples
        in the committed turn) and prefill the conversation up to the end of the last one's
        audio, so that at the end of a long turn only its last chunk is left to encode and
        prefill (see the module's docstring)."""
        turn = request.turns[-1] if request.turns else None
        if turn is None or turn.audio is None or turn.item_id is None:
            return
        chunks = split_chunks(np.asarray(turn.audio, np.float32))
        heard = [
            await self._encode_chunk(turn.item_id, index, chunk)
            for index, chunk in enumerate(chunks)
            if len(chunk) == CHUNK_SAMPLES
        ]
        if not heard:
            return
        history = await self._messages(replace(request, turns=request.turns[:-1]))
        open_turn = audio_message(heard, text=turn.text)
        conversation = self.builder.build([*history, open_turn], add_generation_prompt=False)
        # The turn goes on: its `<|EOT|>` is not heard yet.
        prompt = replace(conversation, token_ids=conversation.token_ids[:-1])
        previous = self._listening.get(turn.item_id)
        unheard = previous.rest_of(prompt) if previous is not None else None
        if unheard is not None and not len(unheard):
            return  # nothing new was heard
        listening = _Listening(await self._submit(prompt, LISTEN), prompt)
        await self._remember(turn.item_id, listening)
        await listening.prefilled()  # done once the work is: the caller may wait for it

    async def _submit(self, prompt: Prompt, params: SamplingParams) -> TokenStream:
        """Fork the listening sequence that holds the longest start of `prompt` (the whole turn
        but what was said since), else submit the whole prompt."""
        matches = [
            (listening, rest)
            for listening in self._listening.values()
            if (rest := listening.rest_of(prompt)) is not None
        ]
        if matches:
            listening, rest = min(matches, key=lambda match: len(match[1]))
            try:
                await listening.prefilled()
                return await self.engine.fork(
                    listening.stream.seq_id, len(listening.prompt), rest, params
                )
            except (KeyError, EngineError):  # the engine forgot it (ended long ago), or it failed
                logger.info(
                    "listening sequence %d not forked; prefilling the whole prompt",
                    listening.stream.seq_id,
                )
        return await self.engine.submit(prompt, params)

    async def _remember(self, item_id: str, listening: _Listening) -> None:
        """One listening sequence per turn, the newest; the oldest turns are forgotten."""
        replaced = self._listening.pop(item_id, None)
        self._listening[item_id] = listening
        gone = [replaced] if replaced is not None else []
        while len(self._listening) > LISTENING_TURNS:
            gone.append(self._listening.popitem(last=False)[1])
        for old in gone:
            await self.engine.cancel(old.stream.seq_id)

    async def _encode(self, turn: Turn) -> list[torch.Tensor]:
        assert turn.audio is not None
        chunks = split_chunks(np.asarray(turn.audio, dtype=np.float32))
        return [
            await self._encode_chunk(turn.item_id, index, chunk)
            for index, chunk in enumerate(chunks)
        ]

    async def _encode_chunk(
        self, item_id: str | None, index: int, chunk: torch.Tensor
    ) -> torch.Tensor:
        """One <= 25 s chunk's embeddings, cached per conversation item, chunk and length (a
        speculative start or `prepare` sees a turn before it has all its audio)."""
        key = None if item_id is None else f"{item_id}:{index}:{len(chunk)}"
        if key is not None and key in self._audio_cache:
            self._audio_cache.move_to_end(key)
            return self._audio_cache[key]
        # Encoding is model work: run it off the event loop.
        [embeds] = await asyncio.to_thread(self.audio_side.model.encode_audio, chunk)
        self.encoded_chunks += 1
        if key is not None:
            self._audio_cache[key] = embeds
            while len(self._audio_cache) > AUDIO_CACHE_CHUNKS:
                self._audio_cache.popitem(last=False)
        return embeds


@dataclass
class _Listening:
    """A sequence that prefilled `prompt`: the conversation and the start of a turn still being
    spoken. A response whose prompt starts with it forks it (`Engine.fork`)."""

    stream: TokenStream
    prompt: Prompt

    def rest_of(self, prompt: Prompt) -> Prompt | None:
        """What `prompt` has after this context (ids and audio rows), or None where `prompt`
        does not start with exactly this context."""
        held = self.prompt
        n = len(held)
        if prompt.token_ids[:n] != held.token_ids or prompt.audio_patch_id != held.audio_patch_id:
            return None
        heard, audio = held.audio_embeds, prompt.audio_embeds
        rows = 0 if heard is None else len(heard)
        if (
            heard is not None
            and rows
            and (audio is None or len(audio) < rows or not torch.equal(audio[:rows], heard))
        ):
            return None
        rest_audio = None if audio is None else audio[rows:]
        return Prompt(prompt.token_ids[n:], rest_audio, prompt.audio_patch_id)

    async def prefilled(self) -> None:
        """Wait for the end of its one-token run, so that a fork reuses all its prefill. Raises
        the engine's error where it failed."""
        async for _ in self.stream:
            pass


class StageClock:
    """Seconds from the start of a response to the first time each stage is reached."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.stages: dict[str, float] = {}

    def mark(self, stage: str) -> None:
        self.stages.setdefault(stage, time.perf_counter() - self.start)


async def _wait_through_cancellation(task: asyncio.Task[None]) -> None:
    """Wait for `task` to end even if the waiter is cancelled meanwhile; such a cancellation
    is raised once the task has ended (a stop must not be cut in half)."""
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = cancelled or not task.done()
    if cancelled:
        raise asyncio.CancelledError
    task.result()


class _Reply:
    """One response in flight: the scheduler's deltas and the speech stream, merged."""

    def __init__(
        self,
        scheduler: ReplyScheduler,
        speech: SpeechStream | None,
        clock: StageClock,
        input_tokens: int,
        tools: set[str] | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.speech = speech
        self.clock = clock
        self.input_tokens = input_tokens
        self.tools = tools or set()
        self.tool_calls = ToolCallParser()
        # Events from both producers; None marks one producer's end, an exception its failure.
        self.events_queue: asyncio.Queue[ResponseEvent | Exception | None] = asyncio.Queue()
        self.tasks: list[asyncio.Task[None]] = []
        self._stopping: asyncio.Task[None] | None = None

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
        """Cancel the producers, the engine sequences and the speech stream. Idempotent, and
        shielded: a caller cancelled again while it stops (a cancel, then a disconnect) still
        waits for the stop to finish, then gets its cancellation, so nothing is left running."""
        if self._stopping is None:
            self._stopping = asyncio.create_task(self._stop())
        await _wait_through_cancellation(self._stopping)

    async def _stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        try:
            await self.scheduler.stop()
        finally:
            if self.speech is not None:
                await self.speech.cancel()

    async def _decode(self) -> None:
        async for event in self.scheduler.events():
            if isinstance(event, AnswerDelta):
                self.clock.mark("first_answer_token")
                self._answer(self.tool_calls.feed(event.text), event.tokens)
            else:
                self.clock.mark("first_reasoning_token")
                self.events_queue.put_nowait(event)
        try:
            self._answer(self.tool_calls.finish(), 0)
        except ToolCallError as error:
            if self.scheduler.complete:  # a call the model closed its turn on, unfinished
                raise InvalidToolCall(str(error)) from None
            # cut by max_output_tokens: the call stays incomplete, as the response does
        if self.speech is not None:
            self.speech.flush()

    def _answer(self, parsed: ParsedDelta, tokens: int) -> None:
        """Speech goes to the speech stream and out as text; tool calls only out, as events."""
        if parsed.speech:
            if self.speech is not None:
                self.speech.feed(parsed.speech)  # the answer only: reasoning is never spoken
            self.events_queue.put_nowait(AnswerDelta(parsed.speech, tokens))
            tokens = 0
        for index, name, delta in parsed.argument_deltas:
            if name not in self.tools:
                raise InvalidToolCall(f"the model called {name!r}, which is not a declared tool")
            self.events_queue.put_nowait(ToolCallDelta(index, name, delta))
        for index, call in parsed.calls:
            self.events_queue.put_nowait(ToolCalled(index, call))

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


def _exchanges(messages: list[Message]) -> list[list[Message]]:
    """The conversation cut before each user turn: the units that truncation drops, oldest
    first, so that a tool call never loses its result nor a reply its question."""
    exchanges: list[list[Message]] = []
    for message in messages:
        if not exchanges or message.role in ("user", "human"):
            exchanges.append([])
        exchanges[-1].append(message)
    return exchanges
