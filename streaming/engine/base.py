"""The one engine interface: the torch engine (`torch_engine.py`) and the vLLM engine
(`vllm_engine.py`) implement it, and callers depend on nothing else.

An engine decodes many sequences at once. A caller submits a prompt and reads the new token ids
as an async stream; it may cancel a sequence (everything it holds comes back) or fork one at a
position into a new sequence whose context is that prefix and a suffix (token ids, or a `Prompt`
with audio). Everything is asynchronous and safe to call from the event loop: the model work
runs off the loop.

What every engine must do:
- Token ids in, token ids out: a prompt is token ids with audio rows at given positions; the
  stream yields generated ids, one per decode step, the stop id last where one ended it.
- `fork` is prefix reuse that an engine may satisfy by recomputation: it succeeds for any
  sequence the engine still knows (running, or among the last few hundred that ended,
  cancelled ones included), whatever became of its cache; the shared prefix is not prefilled
  again where the engine still holds it (`SequenceOutput.cached_tokens` tells how much was
  reused). Callers never catch an engine's cache or slot errors to choose what to do next.
- `cancel` ends a sequence and frees everything it holds (what stays is a bounded record of its
  context for forks, and cache blocks the engine may reuse or evict).
- Bad input (an over-long context, a token id outside the vocabulary, audio rows that do not
  match their positions) is refused with a ValueError at the call, before any work starts.
- A server needs `capacity`, `warm_up()` and `healthy` from any engine: how many sequences and
  tokens it holds, a first request run before traffic, and whether it can still serve.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Self

import torch


@dataclass(frozen=True)
class SamplingParams:
    """How the next token is chosen. `temperature == 0` is greedy decoding."""

    temperature: float = 0.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    max_tokens: int = 512
    stop_ids: tuple[int, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")


@dataclass
class Prompt:
    """A prompt: token ids, with audio embeddings at the `<audio_patch>` positions.

    `audio_embeds` is [n_patches, hidden] in the decoder's dtype; row i is the input embedding
    of the i-th occurrence of `audio_patch_id` in `token_ids`. A text-only prompt has none.
    `audio_positions` names the positions of the rows explicitly instead (engines build such
    prompts for forks, whose generated part may contain the patch id as plain text).
    """

    token_ids: list[int]
    audio_embeds: torch.Tensor | None = None
    audio_patch_id: int | None = None
    audio_positions: list[int] | None = None

    def __len__(self) -> int:
        return len(self.token_ids)

    def positions(self) -> list[int]:
        """Where the audio rows go, one position per row; ValueError where they disagree."""
        rows = 0 if self.audio_embeds is None else len(self.audio_embeds)
        if self.audio_positions is not None:
            positions = self.audio_positions
        elif rows == 0:
            return []
        elif self.audio_patch_id is None:
            raise ValueError("a prompt with audio embeddings needs its audio_patch_id")
        else:
            positions = [i for i, t in enumerate(self.token_ids) if t == self.audio_patch_id]
        if len(positions) != rows:
            raise ValueError(
                f"prompt has {len(positions)} <audio_patch> tokens but {rows} audio "
                "embeddings; they must match one to one"
            )
        return positions

    def head(self, length: int) -> Prompt:
        """The first `length` positions, with the audio rows that fall inside them."""
        positions = self.positions()
        kept = sum(1 for p in positions if p < length)
        audio = None if self.audio_embeds is None or not kept else self.audio_embeds[:kept]
        return Prompt(self.token_ids[:length], audio, self.audio_patch_id, positions[:kept])

    def extend(self, token_ids: Sequence[int], suffix: Prompt | None = None) -> Prompt:
        """This prompt, then `token_ids` as plain text (generated ids), then `suffix` with its
        audio: the context of a fork, with every audio row's position explicit."""
        ids = self.token_ids + list(token_ids)
        positions = self.positions()
        rows = [] if self.audio_embeds is None or not positions else [self.audio_embeds]
        if suffix is not None:
            offset = len(ids)
            positions = positions + [offset + p for p in suffix.positions()]
            if suffix.audio_embeds is not None and len(suffix.audio_embeds):
                rows.append(suffix.audio_embeds.to(rows[0].dtype) if rows else suffix.audio_embeds)
            ids += suffix.token_ids
        audio = None if not rows else rows[0] if len(rows) == 1 else torch.cat(rows)
        patch = (
            self.audio_patch_id
            if self.audio_patch_id is not None
            else (suffix.audio_patch_id if suffix is not None else None)
        )
        return Prompt(ids, audio, patch, positions)


class FinishReason:
    STOP = "stop"  # a stop id was produced (it is reported as the last token)
    LENGTH = "length"  # max_tokens reached, or the cache slot is full
    CANCELLED = "cancelled"
    ERROR = "error"  # the engine failed while running it; iterating the stream raises


@dataclass
class SequenceOutput:
    """What a stream reports: every generated token id, why it ended, and how many positions
    of its context the engine did not prefill because it held them already (a fork's reused
    prefix; None until the engine knows)."""

    seq_id: int
    token_ids: list[int] = field(default_factory=list)
    finish_reason: str | None = None
    cached_tokens: int | None = None


class EngineError(RuntimeError):
    """The engine failed while running a sequence; the stream ended with FinishReason.ERROR."""


@dataclass(frozen=True)
class EngineCapacity:
    """What an engine can hold: sequences decoded together, token positions of cache for all of
    them, and the longest context (prompt and generated tokens) of one sequence."""

    max_sequences: int
    max_cached_tokens: int
    max_context: int


def check_context(
    prompt: Prompt, max_context: int, vocab_size: int, hidden_size: int | None = None
) -> None:
    """The checks every engine makes at submit and fork: a context that leaves room for at
    least one generated token, ids inside the vocabulary, audio rows of the decoder's width
    that match their positions. Raises ValueError saying what to fix."""
    length = len(prompt)
    if not 1 <= length < max_context:
        raise ValueError(
            f"context of {length} tokens; this engine takes 1 to {max_context - 1} "
            f"(its longest context is {max_context} positions, one at least for the reply)"
        )
    low, high = min(prompt.token_ids), max(prompt.token_ids)
    if low < 0 or high >= vocab_size:
        bad = low if low < 0 else high
        raise ValueError(f"token id {bad} is outside the vocabulary (0 to {vocab_size - 1})")
    prompt.positions()
    rows = prompt.audio_embeds
    if hidden_size is not None and rows is not None and len(rows) and rows.shape[-1] != hidden_size:
        raise ValueError(
            f"audio rows are {rows.shape[-1]} wide; this decoder takes {hidden_size} "
            "(the adaptor's output of the same checkpoint)"
        )


def check_fork(
    position: int,
    suffix: Sequence[int] | Prompt,
    max_context: int,
    vocab_size: int,
    hidden_size: int | None = None,
) -> Prompt:
    """The checks of a fork's arguments that need no knowledge of its source (`check_context`
    on the context it will have, and on the suffix); returns the suffix as a `Prompt`."""
    suffix = suffix if isinstance(suffix, Prompt) else Prompt(list(suffix))
    if position < 0:
        raise ValueError(f"fork at {position}: a position is 0 or more")
    if position + len(suffix) < 1:
        raise ValueError("a fork at position 0 needs a suffix: a context has 1 token at least")
    if position + len(suffix) >= max_context:
        raise ValueError(
            f"context of {position + len(suffix)} tokens; this engine takes 1 to "
            f"{max_context - 1} (its longest context is {max_context} positions)"
        )
    if len(suffix):
        check_context(suffix, max_context, vocab_size, hidden_size)
    return suffix


class TokenStream(abc.ABC):
    """The tokens of one sequence, as they are generated. Iterate it with `async for`."""

    seq_id: int

    @abc.abstractmethod
    def __aiter__(self) -> AsyncIterator[int]: ...

    @property
    @abc.abstractmethod
    def output(self) -> SequenceOutput:
        """Tokens so far and, once the stream has ended, the finish reason."""


class Engine(abc.ABC):
    """Batched autoregressive decoding behind one async interface (see the module docstring for
    what every engine must do)."""

    @abc.abstractmethod
    async def submit(self, prompt: Prompt, params: SamplingParams) -> TokenStream:
        """Start a sequence; its tokens stream as they are decoded."""

    @abc.abstractmethod
    async def cancel(self, seq_id: int) -> None:
        """Stop a sequence and free its cache. Idempotent; the stream ends as cancelled. It can
        still be forked (see `fork`)."""

    @abc.abstractmethod
    async def fork(
        self,
        seq_id: int,
        position: int,
        suffix_ids: Sequence[int] | Prompt,
        params: SamplingParams,
    ) -> TokenStream:
        """A new sequence whose context is the first `position` tokens of `seq_id` (prompt and
        generated tokens counted together) followed by `suffix_ids`. The source goes on
        undisturbed. The shared prefix is reused where the engine still holds it, else
        recomputed: the result is the same as submitting the whole context.

        A `Prompt` suffix carries audio embeddings at its own `<audio_patch>` positions, so a
        sequence that heard the first part of a user's turn can be extended with the rest.
        Raises KeyError for a sequence the engine never had or ended long ago, ValueError for a
        position past its tokens or a bad suffix."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Cancel everything and stop the engine's worker."""

    @property
    @abc.abstractmethod
    def capacity(self) -> EngineCapacity:
        """Sequences, cached tokens and context length this engine holds."""

    @property
    @abc.abstractmethod
    def active_sequences(self) -> int:
        """Sequences waiting or running now (0 once everything ended or was cancelled)."""

    @property
    @abc.abstractmethod
    def healthy(self) -> bool:
        """False once the engine can no longer serve (its worker died, or it was closed)."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def warm_up(self) -> None:
        """Start the engine where it starts lazily and run one short request through it, so that
        the first user does not pay for start-up, kernel selection or compilation. Raises
        EngineError where the engine cannot start."""
        stream = await self.submit(Prompt(token_ids=[0]), SamplingParams(max_tokens=1))
        async for _ in stream:
            pass
