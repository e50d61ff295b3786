"""The one engine interface: the torch engine implements it, and the vLLM engine will too.

An engine decodes many sequences at once. A caller submits a prompt and reads the new token ids
as an async stream; it may cancel a sequence (its cache memory comes back) or fork a running one
at a position into a new sequence that shares the prefix, so that only the new suffix (token ids,
or a `Prompt` with audio) is prefilled. Everything is asynchronous and safe to call from the
event loop: the model work runs off the loop.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

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
    """A prompt: token ids, with audio embeddings spliced in at the `<audio_patch>` positions.

    `audio_embeds` is [n_patches, hidden] in the decoder's dtype; row i replaces the embedding of
    the i-th occurrence of `audio_patch_id` in `token_ids`. A text-only prompt has none.
    """

    token_ids: list[int]
    audio_embeds: torch.Tensor | None = None
    audio_patch_id: int | None = None

    def __len__(self) -> int:
        return len(self.token_ids)

    def embed(self, embed_tokens: torch.nn.Embedding) -> torch.Tensor:
        """[len, hidden] input embeddings: token embeddings with audio rows spliced in."""
        ids = torch.tensor(self.token_ids, dtype=torch.long, device=embed_tokens.weight.device)
        embeds = embed_tokens(ids)
        if self.audio_embeds is None or len(self.audio_embeds) == 0:
            return embeds
        if self.audio_patch_id is None:
            raise ValueError("a prompt with audio embeddings needs its audio_patch_id")
        positions = torch.eq(ids, self.audio_patch_id).nonzero().squeeze(1)
        if len(positions) != len(self.audio_embeds):
            raise ValueError(
                f"prompt has {len(positions)} <audio_patch> tokens but {len(self.audio_embeds)} "
                "audio embeddings; they must match one to one"
            )
        embeds = embeds.clone()
        embeds[positions] = self.audio_embeds.to(embeds.dtype)
        return embeds


class FinishReason:
    STOP = "stop"  # a stop id was produced (it is reported as the last token)
    LENGTH = "length"  # max_tokens reached, or the cache slot is full
    CANCELLED = "cancelled"
    ERROR = "error"  # the engine failed while running it; iterating the stream raises


@dataclass
class SequenceOutput:
    """What a finished stream reports: every generated token id and why it ended."""

    seq_id: int
    token_ids: list[int] = field(default_factory=list)
    finish_reason: str | None = None


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
    """Batched autoregressive decoding behind one async interface."""

    @abc.abstractmethod
    async def submit(self, prompt: Prompt, params: SamplingParams) -> TokenStream:
        """Start a sequence; its tokens stream as they are decoded."""

    @abc.abstractmethod
    async def cancel(self, seq_id: int) -> None:
        """Stop a sequence and free its cache. Idempotent; the stream ends as cancelled."""

    @abc.abstractmethod
    async def fork(
        self,
        seq_id: int,
        position: int,
        suffix_ids: Sequence[int] | Prompt,
        params: SamplingParams,
    ) -> TokenStream:
        """A new sequence whose context is the first `position` tokens of `seq_id` (prompt and
        generated tokens counted together) followed by `suffix_ids`. The shared prefix is not
        prefilled again. The source sequence goes on undisturbed.

        A `Prompt` suffix carries audio embeddings at its own `<audio_patch>` positions, so a
        sequence that heard the first part of a user's turn can be extended with the rest."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Cancel everything and stop the engine's worker."""
