"""Training and evaluation sequences, built with the serving code's own `PromptBuilder`.

A sequence is a conversation whose last user turn is a spoken question, then an assistant
turn. The loss covers only what the model must write, in one of three modes (DESIGN section 6):

    think     prompt `...<|BOT|>assistant\\n<think>\\n`;
              target `{reasoning}\\n</think>\\n{answer}<|EOT|>`
    partial   prompt `...<think>\\n{reasoning cut short}\\n</think>\\n`; target `{answer}<|EOT|>`
              (the articulation branch, Mind-Paced Speaking's think-incomplete training)
    no_think  prompt `...<think>\\n\\n</think>\\n`; target `{answer}<|EOT|>`

Some sequences carry a system prompt or an earlier exchange (history keeps answers only), as
the server sends them. Audio spans are placeholders of the right length (`audio_token_count`);
the trainer fills them with the encoder's output for the listed clips.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from streaming.arith.tokenizer import SYSTEM_PROMPTS
from streaming.model.audio_encoder import audio_token_count
from streaming.model.prompt import Message, PromptBuilder, audio_message
from streaming.model.tokens import SpecialTokens

IGNORE = -100  # label of a position without loss (torch's cross-entropy default)
MODES = ("think", "partial", "no_think")
MODE_WEIGHTS = (0.55, 0.3, 0.15)  # typed questions
ANSWER_ONLY_WEIGHTS = (0.65, 0.35)  # partial, no_think: the second sequence of a spoken one
SYSTEM_PROBABILITY = 0.1
HISTORY_PROBABILITY = 0.1
# Typed questions: the same targets without the encoder, about half the cost of a spoken one.
# They teach the decoder the arithmetic and the answer's wording cheaply (and let the model
# answer text input too); spoken ones then only have to teach listening.
TEXT_PROBABILITY = 0.5


@dataclass(frozen=True)
class Turn:
    """A question: spoken (clip `clip` of the mel cache) or typed (`text`), with its targets."""

    clip: int
    mel_frames: int
    reasoning: str
    answer: str
    text: str = ""
    spoken: bool = True


@dataclass(frozen=True)
class Sample:
    """Token ids, labels (IGNORE where no loss) and the clips of its audio spans, in order."""

    ids: list[int]
    labels: list[int]
    clips: list[int]


class SequenceBuilder:
    def __init__(self, tokenizer: PreTrainedTokenizerBase, special: SpecialTokens) -> None:
        self.prompts = PromptBuilder(tokenizer, special)
        self.special = special
        self.encode = functools.lru_cache(maxsize=1 << 16)(self._encode)

    def _encode(self, text: str) -> tuple[int, ...]:
        return tuple(self.prompts.encode(text))

    def prompt_ids(
        self,
        turn: Turn,
        history: Sequence[Turn] = (),
        system: str | None = None,
        mode: str = "think",
        cut: int | None = None,
    ) -> tuple[list[int], list[int]]:
        """(context ids up to where the model starts writing, clips in order)."""
        messages = [Message("system", system)] if system else []
        clips = []
        for past in (*history, turn):
            if past.spoken:
                messages.append(audio_message([_placeholder(past.mel_frames)]))
                clips.append(past.clip)
            else:
                messages.append(Message("human", past.text))
            if past is not turn:
                messages.append(Message("assistant", past.answer))
        ids = self.prompts.build(messages, add_generation_prompt=False).token_ids
        return ids + self.assistant_prefix(turn, mode, cut), clips

    def assistant_prefix(self, turn: Turn, mode: str, cut: int | None = None) -> list[int]:
        """Generation prompt of `mode`; `partial` keeps `cut` reasoning tokens, then "\\n"."""
        if mode == "think":
            return self.prompts.assistant_prefix()
        if mode == "no_think":
            return self.prompts.assistant_prefix(reasoning="")
        if mode != "partial":
            raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
        reasoning = list(self.encode(turn.reasoning))
        kept = reasoning[: len(reasoning) if cut is None else cut]
        return self.prompts.assistant_prefix(reasoning=kept + list(self.encode("\n")))

    def target_ids(self, turn: Turn, mode: str) -> list[int]:
        answer = [*self.encode(turn.answer), self.special.eot]
        if mode != "think":
            return answer
        return [
            *self.encode(turn.reasoning + "\n"),
            self.special.think_end,
            *self.encode("\n"),
            *answer,
        ]

    def samples(self, turn: Turn, others: Sequence[Turn], rng: np.random.Generator) -> list[Sample]:
        """Training sequences for `turn`, with random system prompts and history.

        Typed: one sequence in a random mode. Spoken: two sequences that share the clip's
        encoding, one `think` and one answer-only (`partial` or `no_think`): the encoder runs
        once for two targets.
        """
        if rng.random() < TEXT_PROBABILITY:
            typed = dataclasses.replace(turn, spoken=False)
            return [self.sample(typed, others, rng, MODES[rng.choice(3, p=MODE_WEIGHTS)])]
        answer_only = MODES[1 + rng.choice(2, p=ANSWER_ONLY_WEIGHTS)]
        return [
            self.sample(turn, others, rng, "think"),
            self.sample(turn, others, rng, answer_only),
        ]

    def sample(
        self, turn: Turn, others: Sequence[Turn], rng: np.random.Generator, mode: str
    ) -> Sample:
        """One training sequence for `turn` in `mode` (a random cut for `partial`)."""
        cut = None
        if mode == "partial":
            cut = int(rng.integers(0, len(self.encode(turn.reasoning)) + 1))
        system = (
            SYSTEM_PROMPTS[rng.integers(len(SYSTEM_PROMPTS))]
            if rng.random() < SYSTEM_PROBABILITY
            else None
        )
        history = (
            [others[rng.integers(len(others))]]
            if others and rng.random() < HISTORY_PROBABILITY
            else []
        )
        context, clips = self.prompt_ids(turn, history, system, mode, cut)
        target = self.target_ids(turn, mode)
        return Sample(ids=context + target, labels=[IGNORE] * len(context) + target, clips=clips)


def _placeholder(mel_frames: int) -> torch.Tensor:
    """A stand-in for one clip's embeddings: only its row count matters to the builder."""
    return torch.empty(audio_token_count(mel_frames), 0)
