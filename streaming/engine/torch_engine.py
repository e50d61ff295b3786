"""The torch engine: our own batched decoding loop over a transformers Qwen2 decoder.

One worker thread owns the model and the static KV cache (gpt-fast style, see `kv_cache.py`).
It loops: run the commands the event loop sent (submit, fork, cancel), admit waiting sequences
into free cache slots, prefill one chunk of one prompt, then run one decode step for every
sequence that is decoding, as one batch whatever their lengths. Tokens go back to each stream
with `loop.call_soon_threadsafe` (one call per loop turn and event loop, whatever the batch),
so the event loop never runs model code and never blocks.

Commands take effect at a step boundary: a cancel frees the slot before the next step. A fork
copies the source's cached keys/values of the shared prefix into its own slot and prefills only
what the source has not cached (the suffix, and at most the source's last sampled token). A
suffix may carry audio (a `Prompt`): a sequence that heard the first chunks of a long turn is
extended with the rest of the turn, so only the rest is prefilled when the turn ends.

A sequence that ended (stop, length, cancel) gives its slot back at once, but the slot keeps its
keys/values until another sequence needs it: free slots that hold nothing are handed out first,
then the longest-ended. Until then the ended sequence can still be forked without a prefill, so
a fork racing the end of its source (or a "continue" after max_tokens) does not fail.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
import logging
import queue
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers.models.qwen2.modeling_qwen2 import Qwen2Model

from streaming.engine.base import (
    Engine,
    FinishReason,
    Prompt,
    SamplingParams,
    SequenceOutput,
    TokenStream,
)
from streaming.engine.decoder import CachedDecoder
from streaming.engine.sampling import make_generator, sample_token

logger = logging.getLogger(__name__)

# A long prompt is prefilled this many tokens per loop turn, so that one 30 s clip does not hold
# back every other conversation's next token for the whole prefill.
PREFILL_CHUNK_TOKENS = 256


class EngineError(RuntimeError):
    """The engine failed while running a sequence; the stream ended with FinishReason.ERROR."""


class _End:
    """Queued after a stream's last token."""


_END = _End()


class _QueuedTokenStream(TokenStream):
    """Tokens pushed from the worker (through the event loop) into an asyncio queue."""

    def __init__(self, seq_id: int) -> None:
        self.seq_id = seq_id
        self._output = SequenceOutput(seq_id)
        self._queue: asyncio.Queue[int | _End] = asyncio.Queue()
        self._error: BaseException | None = None

    @property
    def output(self) -> SequenceOutput:
        return self._output

    async def __aiter__(self) -> AsyncIterator[int]:
        while True:
            item = await self._queue.get()
            if isinstance(item, _End):
                self._queue.put_nowait(item)  # so that iterating an ended stream again ends too
                if self._error is not None:
                    raise EngineError(f"sequence {self.seq_id} failed") from self._error
                return
            yield item

    def _receive(self, token: int | None, reason: str | None, error: BaseException | None) -> None:
        """On the event loop: one new token and/or the end of the stream."""
        if self._output.finish_reason is not None:
            return
        if token is not None:
            self._output.token_ids.append(token)
            self._queue.put_nowait(token)
        if reason is not None:
            self._output.finish_reason = reason
            self._error = error
            self._queue.put_nowait(_END)


@dataclass(eq=False)
class _Sequence:
    """Worker-side state of one sequence."""

    seq_id: int
    params: SamplingParams
    stream: _QueuedTokenStream
    loop: asyncio.AbstractEventLoop
    context: torch.Tensor  # [n, hidden] embeddings of the initial context (prompt, or fork's)
    token_ids: list[int]  # context ids, then generated ids
    generator: torch.Generator | None
    seen: torch.Tensor | None  # [vocab] bool, for the repetition penalty
    fork_source: _Sequence | None = None
    fork_length: int = 0
    slot: int | None = None  # while running, and after the end while the slot is not reused
    cached: int = 0  # positions whose keys/values are in the slot
    generated: int = 0
    next_token: int | None = None  # sampled, to be fed at position `cached`
    ended: bool = False

    @property
    def prefilling(self) -> bool:
        return self.cached < len(self.context)

    def context_embeds(self, decoder: CachedDecoder, start: int, end: int) -> torch.Tensor:
        """[end - start, hidden] input embeddings of context positions [start, end)."""
        n = len(self.context)
        parts = []
        if start < n:
            parts.append(self.context[start : min(end, n)])
        if end > n:
            parts.append(decoder.embed(self.token_ids[max(start, n) : end]))
        return parts[0] if len(parts) == 1 else torch.cat(parts)


def _resolve(
    future: asyncio.Future[Any], result: Any = None, error: Exception | None = None
) -> None:
    if future.done():  # the caller gave up waiting
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class TorchEngine(Engine):
    """Batched decoding of up to `max_slots` sequences of up to `max_seq_len` positions each.

    `decoder` and `lm_head` are moved to `device`/`dtype` in place when given (by default they
    stay where they are). Keys/values take 2 * layers * max_slots * kv_heads * max_seq_len *
    head_dim elements, allocated once here.
    """

    def __init__(
        self,
        decoder: Qwen2Model,
        lm_head: nn.Linear,
        *,
        max_slots: int = 16,
        max_seq_len: int = 4096,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        prefill_chunk: int = PREFILL_CHUNK_TOKENS,
    ) -> None:
        device = torch.device(device) if device is not None else lm_head.weight.device
        dtype = dtype or lm_head.weight.dtype
        for module in (decoder, lm_head):
            nn.Module.to(module, device=device, dtype=dtype)
            module.eval()
        self._model = CachedDecoder(
            decoder, lm_head, max_slots=max_slots, max_len=max_seq_len, device=device, dtype=dtype
        )
        self.max_slots = max_slots
        self.max_seq_len = max_seq_len
        self.prefill_chunk = prefill_chunk
        self.vocab_size = lm_head.out_features
        self.prefilled_tokens = 0  # counts every position prefilled (not decoded), for tests
        self._ids = itertools.count()
        self._commands: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._sequences: dict[int, _Sequence] = {}
        self._waiting: collections.deque[_Sequence] = collections.deque()
        self._running: list[_Sequence] = []
        # Ended sequences whose slot (free again) still holds their keys/values, oldest first.
        self._ended: dict[int, _Sequence] = {}
        # Results for each event loop, sent once per loop turn (see `_post`).
        self._outbox: dict[
            asyncio.AbstractEventLoop, list[tuple[Callable[..., None], tuple[Any, ...]]]
        ] = {}
        self._closed = False
        self._worker = threading.Thread(target=self._run, name="torch-engine", daemon=True)
        self._worker.start()

    @property
    def free_slots(self) -> int:
        return self._model.cache.free_slots

    # -- the async interface (event loop side) -------------------------------------------------

    async def submit(self, prompt: Prompt, params: SamplingParams) -> TokenStream:
        self._check_context_length(len(prompt))
        _check_audio_patches(prompt)
        stream = _QueuedTokenStream(next(self._ids))
        loop = asyncio.get_running_loop()
        self._send(lambda: self._start(prompt, params, stream, loop))
        return stream

    async def cancel(self, seq_id: int) -> None:
        if self._closed:
            return
        done = asyncio.get_running_loop().create_future()
        self._send(lambda: self._cancel(seq_id, done))
        await done

    async def fork(
        self,
        seq_id: int,
        position: int,
        suffix_ids: Sequence[int] | Prompt,
        params: SamplingParams,
    ) -> TokenStream:
        """See `Engine.fork`. The source may be running, waiting, or ended as long as its slot
        was not reused (see the module's docstring). Raises KeyError for an unknown source, or
        one whose cache is gone (submit its whole context instead), ValueError for a position
        past its tokens or a suffix whose audio rows and patch tokens disagree."""
        self._check_context_length(position + len(suffix_ids))
        if isinstance(suffix_ids, Prompt):
            _check_audio_patches(suffix_ids)
            suffix = suffix_ids
        else:
            suffix = Prompt(token_ids=list(suffix_ids))
        stream = _QueuedTokenStream(next(self._ids))
        loop = asyncio.get_running_loop()
        started = loop.create_future()
        self._send(lambda: self._fork(seq_id, position, suffix, params, stream, loop, started))
        await started
        return stream

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._commands.put(None)
        await asyncio.to_thread(self._worker.join)

    async def __aenter__(self) -> TorchEngine:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _send(self, command: Callable[[], None]) -> None:
        if self._closed:
            raise RuntimeError("the engine is closed")
        self._commands.put(command)

    def _check_context_length(self, length: int) -> None:
        if not 1 <= length <= self.max_seq_len:
            raise ValueError(
                f"context of {length} tokens; this engine takes 1 to "
                f"{self.max_seq_len} (max_seq_len)"
            )

    # -- commands (worker side) ----------------------------------------------------------------

    def _start(
        self,
        prompt: Prompt,
        params: SamplingParams,
        stream: _QueuedTokenStream,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        try:
            context = self._embed(prompt)
        except Exception as exc:  # e.g. audio embeddings of the wrong width
            logger.exception("could not embed the prompt of sequence %d", stream.seq_id)
            self._post(loop, stream._receive, None, FinishReason.ERROR, exc)
            return
        self._enqueue(self._new_sequence(stream, loop, params, context, list(prompt.token_ids)))

    def _embed(self, prompt: Prompt) -> torch.Tensor:
        """[len, hidden] input embeddings of a prompt, audio rows included, on the model."""
        if prompt.audio_embeds is not None:
            audio = prompt.audio_embeds.to(self._model.device, self._model.dtype)
            prompt = dataclasses.replace(prompt, audio_embeds=audio)
        return prompt.embed(self._model.decoder.embed_tokens)

    def _fork(
        self,
        seq_id: int,
        position: int,
        suffix: Prompt,
        params: SamplingParams,
        stream: _QueuedTokenStream,
        loop: asyncio.AbstractEventLoop,
        started: asyncio.Future[None],
    ) -> None:
        source = self._sequences.get(seq_id) or self._ended.get(seq_id)
        error: Exception | None = None
        if source is None:
            error = KeyError(
                f"sequence {seq_id} is unknown, or it ended and its cache slot was reused"
            )
        elif not 0 <= position <= len(source.token_ids):
            error = ValueError(
                f"fork at {position} but sequence {seq_id} has {len(source.token_ids)} tokens"
            )
        if error is not None or source is None:
            self._post(loop, _resolve, started, None, error)
            return
        parts = [source.context_embeds(self._model, 0, position)] if position else []
        try:
            if len(suffix):
                parts.append(self._embed(suffix))
        except Exception as exc:  # e.g. a token id outside the vocabulary, audio too wide
            self._post(loop, _resolve, started, None, exc)
            return
        context = torch.cat(parts)
        seq = self._new_sequence(
            stream, loop, params, context, source.token_ids[:position] + list(suffix.token_ids)
        )
        seq.fork_source, seq.fork_length = source, position
        self._enqueue(seq)
        self._post(loop, _resolve, started)

    def _cancel(self, seq_id: int, done: asyncio.Future[None]) -> None:
        seq = self._sequences.get(seq_id)
        if seq is not None:
            self._end(seq, FinishReason.CANCELLED)
        self._post(done.get_loop(), _resolve, done)

    def _new_sequence(
        self,
        stream: _QueuedTokenStream,
        loop: asyncio.AbstractEventLoop,
        params: SamplingParams,
        context: torch.Tensor,
        token_ids: list[int],
    ) -> _Sequence:
        seen = None
        if params.repetition_penalty != 1.0:
            seen = torch.zeros(self.vocab_size, dtype=torch.bool, device=self._model.device)
            seen[torch.tensor(token_ids, dtype=torch.long, device=self._model.device)] = True
        return _Sequence(
            seq_id=stream.seq_id,
            params=params,
            stream=stream,
            loop=loop,
            context=context,
            token_ids=token_ids,
            generator=make_generator(params, self._model.device),
            seen=seen,
        )

    def _enqueue(self, seq: _Sequence) -> None:
        self._sequences[seq.seq_id] = seq
        self._waiting.append(seq)

    # -- the loop (worker side) ----------------------------------------------------------------

    def _run(self) -> None:
        with torch.inference_mode():
            while self._run_commands(block=not (self._waiting or self._running)):
                try:
                    self._admit()
                    self._prefill_step()
                    self._decode_step()
                except Exception as exc:  # a bug here must end the streams, not hang them
                    self._fail(list(self._running), exc)
                self._send_outbox()
            for seq in list(self._sequences.values()):
                self._end(seq, FinishReason.CANCELLED)
            self._ended.clear()
            self._send_outbox()

    def _run_commands(self, block: bool) -> bool:
        """Run the queued commands (waiting for one if `block`); False once told to stop."""
        try:
            command = self._commands.get(block=block)
        except queue.Empty:
            return True
        while command is not None:
            try:
                command()
            except Exception:  # a bad command must not stop everybody else's decoding
                logger.exception("engine command failed")
            self._send_outbox()  # a command's answer must not wait for the next step
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return True
        return False

    def _admit(self) -> None:
        while self._waiting:
            seq = self._waiting[0]
            source = seq.fork_source
            source_slot = source.slot if source is not None else None
            slot = self._allocate_slot(spare=source)
            if slot is None:
                return
            self._waiting.popleft()
            seq.slot, seq.fork_source = slot, None
            self._running.append(seq)
            if source is None or source_slot is None:
                continue
            # At least one position is prefilled: its logits give the first token.
            shared = min(seq.fork_length, source.cached, len(seq.context) - 1)
            if slot != source_slot:  # else the fork took over its ended source's slot
                self._model.cache.copy_prefix(source_slot, slot, shared)
            seq.cached = shared

    def _allocate_slot(self, spare: _Sequence | None) -> int | None:
        """A free slot: one that holds nothing if any, else the slot of the longest-ended
        sequence (which then can no longer be forked), taking `spare`'s last."""
        cache = self._model.cache
        retained = [seq.slot for seq in self._ended.values() if seq.slot is not None]
        slot = cache.allocate(avoid=retained)
        if slot is not None:
            return slot
        for ended in sorted(self._ended.values(), key=lambda seq: seq is spare):
            if ended.slot is not None:
                del self._ended[ended.seq_id]
                slot, ended.slot = ended.slot, None
                cache.take(slot)
                return slot
        return None

    def _prefill_step(self) -> None:
        seq = next((s for s in self._running if s.prefilling), None)
        if seq is None or seq.slot is None:
            return
        try:
            start = seq.cached
            end = min(len(seq.context), start + self.prefill_chunk)
            hidden = self._model.forward(seq.context[start:end][None], [seq.slot], [start])
            seq.cached = end
            self.prefilled_tokens += end - start
            if not seq.prefilling:
                self._accept([seq], self._model.logits(hidden[:, -1]))
        except Exception as exc:
            self._fail([seq], exc)

    def _decode_step(self) -> None:
        batch = sorted(
            (s for s in self._running if s.next_token is not None and not s.prefilling),
            key=lambda s: s.slot or 0,
        )
        if not batch:
            return
        try:
            tokens = [s.next_token for s in batch if s.next_token is not None]
            embeds = self._model.embed(tokens)[:, None]
            slots = [s.slot for s in batch if s.slot is not None]
            hidden = self._model.forward(embeds, slots, [s.cached for s in batch])
            for seq in batch:
                seq.cached += 1
            self._accept(batch, self._model.logits(hidden[:, 0]))
        except Exception as exc:
            self._fail(batch, exc)

    def _accept(self, batch: list[_Sequence], logits: torch.Tensor) -> None:
        """Sample each sequence's next token from its logits row; deliver it; end finished ones."""
        for seq, token in zip(batch, self._sample(batch, logits), strict=True):
            seq.token_ids.append(token)
            seq.generated += 1
            if seq.seen is not None:
                seq.seen[token] = True
            reason = self._finish_reason(seq, token)
            if reason is None:
                seq.next_token = token
                self._deliver(seq, token, None)
            else:
                self._end(seq, reason, token)

    @staticmethod
    def _sample(batch: list[_Sequence], logits: torch.Tensor) -> list[int]:
        if all(s.params.temperature == 0 and s.seen is None for s in batch):
            return logits.argmax(dim=-1).tolist()  # one op for an all-greedy batch
        return [
            sample_token(row, s.params, s.seen, s.generator)
            for s, row in zip(batch, logits, strict=True)
        ]

    def _finish_reason(self, seq: _Sequence, token: int) -> str | None:
        if token in seq.params.stop_ids:
            return FinishReason.STOP
        if seq.generated >= seq.params.max_tokens or seq.cached >= self.max_seq_len:
            return FinishReason.LENGTH
        return None

    def _fail(self, batch: list[_Sequence], error: Exception) -> None:
        logger.exception("engine step failed for sequences %s", [s.seq_id for s in batch])
        for seq in batch:
            self._end(seq, FinishReason.ERROR, error=error)

    def _end(
        self,
        seq: _Sequence,
        reason: str,
        token: int | None = None,
        error: Exception | None = None,
    ) -> None:
        """Take `seq` out of the engine, free its slot, and end its stream."""
        if seq.ended:
            return
        seq.ended = True
        self._sequences.pop(seq.seq_id, None)
        if seq in self._running:
            self._running.remove(seq)
        elif seq in self._waiting:
            self._waiting.remove(seq)
        if seq.slot is not None:
            self._model.cache.release(seq.slot)
            self._ended[seq.seq_id] = seq  # the slot's contents stay valid until reused
        seq.fork_source = None
        self._deliver(seq, token, reason, error)

    def _deliver(
        self,
        seq: _Sequence,
        token: int | None,
        reason: str | None,
        error: Exception | None = None,
    ) -> None:
        self._post(seq.loop, seq.stream._receive, token, reason, error)

    def _post(
        self, loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any
    ) -> None:
        """Queue `callback(*args)` to run on `loop`, in order, at the next `_send_outbox`."""
        self._outbox.setdefault(loop, []).append((callback, args))

    def _send_outbox(self) -> None:
        outbox, self._outbox = self._outbox, {}
        for loop, calls in outbox.items():
            try:
                loop.call_soon_threadsafe(_run_calls, calls)
            except RuntimeError:  # the caller's event loop is closed: nobody is listening
                pass


def _run_calls(calls: list[tuple[Callable[..., None], tuple[Any, ...]]]) -> None:
    for callback, args in calls:
        callback(*args)


def _check_audio_patches(prompt: Prompt) -> None:
    """Fail at submit, not later in the worker, when audio rows and patch tokens disagree."""
    n_embeds = 0 if prompt.audio_embeds is None else len(prompt.audio_embeds)
    if n_embeds == 0:
        return
    n_patches = sum(1 for token in prompt.token_ids if token == prompt.audio_patch_id)
    if n_patches != n_embeds:
        raise ValueError(
            f"prompt has {n_patches} <audio_patch> tokens but {n_embeds} audio embeddings; "
            "they must match one to one"
        )
