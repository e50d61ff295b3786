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
a fork racing the end of its source (or a "continue" after max_tokens) costs nothing. After
that the engine still remembers its context (token ids and audio rows, no cache) for the last
`ENDED_SEQUENCES_KEPT` ended sequences (`records.py`), and a fork of one recomputes the prefix
(see `base.Engine.fork`): a fork never fails because a slot was reused.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers.models.qwen2.modeling_qwen2 import Qwen2Model

from streaming.engine.base import (
    Engine,
    EngineCapacity,
    EngineError,
    FinishReason,
    Prompt,
    SamplingParams,
    TokenStream,
    check_context,
    check_fork,
)
from streaming.engine.decoder import CachedDecoder
from streaming.engine.records import ENDED_SEQUENCES_KEPT, SequenceRecord, SequenceRecords
from streaming.engine.sampling import make_generator, sample_token
from streaming.engine.streams import QueuedTokenStream

__all__ = ["PREFILL_CHUNK_TOKENS", "EngineError", "TorchEngine"]

logger = logging.getLogger(__name__)

# A long prompt is prefilled this many tokens per loop turn, so that one 30 s clip does not hold
# back every other conversation's next token for the whole prefill.
PREFILL_CHUNK_TOKENS = 256


@dataclass(eq=False, kw_only=True)
class _Sequence(SequenceRecord):
    """Worker-side state of one sequence (its record: the initial context and generated ids)."""

    params: SamplingParams
    stream: QueuedTokenStream | None  # None once it ended
    loop: asyncio.AbstractEventLoop
    context: torch.Tensor | None  # [n, hidden] its embeddings, while it runs
    generator: torch.Generator | None
    seen: torch.Tensor | None  # [vocab] bool, for the repetition penalty
    fork_source: _Sequence | None = None
    fork_length: int = 0
    slot: int | None = None  # while running, and after the end while the slot is not reused
    cached: int = 0  # positions whose keys/values are in the slot
    next_token: int | None = None  # sampled, to be fed at position `cached`
    ended: bool = False

    @property
    def prefilling(self) -> bool:
        return self.context is not None and self.cached < len(self.context)


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
        ended_kept: int = ENDED_SEQUENCES_KEPT,
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
        self.vocab_size = min(lm_head.out_features, decoder.embed_tokens.num_embeddings)
        self.hidden_size = lm_head.in_features
        self.prefilled_tokens = 0  # counts every position prefilled (not decoded), for tests
        self._ids = itertools.count()
        self._commands: queue.Queue[Callable[[], None] | None] = queue.Queue()
        # Sequences waiting or running, and the last ended ones; ended ones with a `slot` still
        # hold their keys/values there (the slot is free: another sequence may take it, see
        # `_allocate_slot`).
        self._records: SequenceRecords[_Sequence] = SequenceRecords(ended_kept)
        # Waiting or running, by id: `_records.active` (a leak test and benchmarks/soak.py read
        # this name).
        self._waiting: collections.deque[_Sequence] = collections.deque()
        self._running: list[_Sequence] = []
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

    @property
    def capacity(self) -> EngineCapacity:
        return EngineCapacity(
            max_sequences=self.max_slots,
            max_cached_tokens=self.max_slots * self.max_seq_len,
            max_context=self.max_seq_len,
        )

    @property
    def active_sequences(self) -> int:
        return len(self._records.active)

    @property
    def healthy(self) -> bool:
        return not self._closed and self._worker.is_alive()

    # -- the async interface (event loop side) -------------------------------------------------

    async def submit(self, prompt: Prompt, params: SamplingParams) -> TokenStream:
        check_context(prompt, self.max_seq_len, self.vocab_size, self.hidden_size)
        stream = QueuedTokenStream(next(self._ids))
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
        """See `Engine.fork`. The source may be running, waiting, or ended and remembered (see
        the module's docstring); its keys/values are copied where its slot still holds them."""
        suffix = check_fork(
            position, suffix_ids, self.max_seq_len, self.vocab_size, self.hidden_size
        )
        stream = QueuedTokenStream(next(self._ids))
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

    def _send(self, command: Callable[[], None]) -> None:
        if self._closed:
            raise RuntimeError("the engine is closed")
        self._commands.put(command)

    # -- commands (worker side) ----------------------------------------------------------------

    def _start(
        self,
        prompt: Prompt,
        params: SamplingParams,
        stream: QueuedTokenStream,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        try:
            seq = self._new_sequence(stream, loop, params, prompt)
        except Exception as exc:  # e.g. audio embeddings of the wrong width
            logger.exception("could not embed the prompt of sequence %d", stream.seq_id)
            self._post(loop, stream.receive, (), FinishReason.ERROR, exc)
            return
        self._enqueue(seq)

    def _embed(self, prompt: Prompt) -> torch.Tensor:
        """[len, hidden] input embeddings of a prompt, audio rows included, on the model
        (`input_embeddings`: the splice is what a prompt means)."""
        return input_embeddings(prompt, self._model.decoder.embed_tokens)

    def _fork(
        self,
        seq_id: int,
        position: int,
        suffix: Prompt,
        params: SamplingParams,
        stream: QueuedTokenStream,
        loop: asyncio.AbstractEventLoop,
        started: asyncio.Future[None],
    ) -> None:
        try:
            source, context = self._records.fork_context(seq_id, position, suffix)
            seq = self._new_sequence(stream, loop, params, context)
        except Exception as exc:  # an unknown source, a position past its end, bad audio rows
            self._post(loop, _resolve, started, None, exc)
            return
        seq.fork_source, seq.fork_length = source, position
        self._enqueue(seq)
        self._post(loop, _resolve, started)

    def _cancel(self, seq_id: int, done: asyncio.Future[None]) -> None:
        seq = self._records.active.get(seq_id)
        if seq is not None:
            self._end(seq, FinishReason.CANCELLED)
        self._post(done.get_loop(), _resolve, done)

    def _new_sequence(
        self,
        stream: QueuedTokenStream,
        loop: asyncio.AbstractEventLoop,
        params: SamplingParams,
        prompt: Prompt,
    ) -> _Sequence:
        context = self._embed(prompt)
        seen = None
        if params.repetition_penalty != 1.0:
            seen = torch.zeros(self.vocab_size, dtype=torch.bool, device=self._model.device)
            seen[torch.tensor(prompt.token_ids, dtype=torch.long, device=self._model.device)] = True
        return _Sequence(
            seq_id=stream.seq_id,
            params=params,
            stream=stream,
            loop=loop,
            prompt=prompt,
            context=context,
            generator=make_generator(params, self._model.device),
            seen=seen,
        )

    def _enqueue(self, seq: _Sequence) -> None:
        self._records.start(seq)
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
            for seq in list(self._records.active.values()):
                self._end(seq, FinishReason.CANCELLED)
            self._records.clear()
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
            shared = 0
            if source is not None and source_slot is not None:
                # At least one position is prefilled: its logits give the first token.
                shared = min(seq.fork_length, source.cached, len(seq.prompt) - 1)
                if slot != source_slot:  # else the fork took over its ended source's slot
                    self._model.cache.copy_prefix(source_slot, slot, shared)
            seq.cached = shared
            if seq.stream is not None:
                self._post(seq.loop, seq.stream.receive, (), None, None, shared)

    def _allocate_slot(self, spare: _Sequence | None) -> int | None:
        """A free slot: one that holds nothing if any, else the slot of the longest-ended
        sequence (which then can no longer be forked), taking `spare`'s last."""
        cache = self._model.cache
        retained = [seq.slot for seq in self._records.ended.values() if seq.slot is not None]
        slot = cache.allocate(avoid=retained)
        if slot is not None:
            return slot
        for ended in sorted(self._records.ended.values(), key=lambda seq: seq is spare):
            if ended.slot is not None:
                slot, ended.slot = ended.slot, None  # it stays remembered, without a cache
                cache.take(slot)
                return slot
        return None

    def _prefill_step(self) -> None:
        seq = next((s for s in self._running if s.prefilling), None)
        if seq is None or seq.slot is None or seq.context is None:
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
            seq.generated.append(token)
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
        # The context is full: prompt and generated tokens fill every position.
        if len(seq.generated) >= seq.params.max_tokens or seq.length >= self.max_seq_len:
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
        if seq in self._running:
            self._running.remove(seq)
        elif seq in self._waiting:
            self._waiting.remove(seq)
        if seq.slot is not None:
            self._model.cache.release(seq.slot)  # its contents stay valid until reused
        seq.fork_source = None
        self._deliver(seq, token, reason, error)
        self._remember(seq)

    def _remember(self, seq: _Sequence) -> None:
        """Keep an ended sequence's context for forks; drop what only decoding needed."""
        seq.context = seq.seen = seq.generator = None
        seq.stream = None  # everything it had to say is on its way
        for forgotten in self._records.end(seq):
            forgotten.slot = None

    def _deliver(
        self,
        seq: _Sequence,
        token: int | None,
        reason: str | None,
        error: Exception | None = None,
    ) -> None:
        if seq.stream is not None:
            tokens = () if token is None else (token,)
            self._post(seq.loop, seq.stream.receive, tokens, reason, error)

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


def input_embeddings(prompt: Prompt, embed_tokens: torch.nn.Embedding) -> torch.Tensor:
    """[len, hidden] input embeddings of `prompt` for a decoder whose token embeddings are
    `embed_tokens`: the token embeddings with the audio rows spliced in at their positions. What
    a prompt means to every engine; the torch engine and the tests' references compute it."""
    ids = torch.tensor(prompt.token_ids, dtype=torch.long, device=embed_tokens.weight.device)
    embeds = embed_tokens(ids)
    positions = prompt.positions()
    if not positions:
        return embeds
    assert prompt.audio_embeds is not None
    embeds = embeds.clone()
    index = torch.tensor(positions, dtype=torch.long, device=embeds.device)
    embeds[index] = prompt.audio_embeds.to(embeds.device, embeds.dtype)
    return embeds
