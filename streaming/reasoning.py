"""Split a reply as it streams into its reasoning and its answer.

R1 writes `<think>\\n{reasoning}\\n</think>\\n{answer}<|EOT|>`, and its generation prompt already
ends with `<think>\\n`, so the output usually starts inside the reasoning with no opening tag.
Two layers, each usable alone:

- `IncrementalDetokenizer`: token ids in, text deltas out, never splitting a UTF-8 character whose
  bytes span several byte-level tokens.
- `ReasoningParser`: text deltas in, `ReplyDelta(reasoning, answer)` out. Tags may arrive split
  across deltas (a tokenizer without `<think>` as one token spells it in pieces); the parser
  holds back only the few characters that could still become a tag.

`ReplyParser` joins them for a token stream and ends at a stop id (which is not text).
Whitespace around each part is trimmed (the newlines the format puts around the tags), so that
a reply reads the same however it was split; whitespace inside a part passes unchanged.
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"
# The decoder's mark for bytes that are not (yet) a whole UTF-8 character.
REPLACEMENT_CHAR = "\ufffd"


@dataclass(frozen=True)
class ReplyDelta:
    """New text of each part; either may be empty."""

    reasoning: str = ""
    answer: str = ""

    def __bool__(self) -> bool:
        return bool(self.reasoning or self.answer)

    def __add__(self, other: ReplyDelta) -> ReplyDelta:
        return ReplyDelta(self.reasoning + other.reasoning, self.answer + other.answer)


class IncrementalDetokenizer:
    """Token ids in, text out: decodes a short window of recent tokens and emits what it adds,
    waiting while the window ends in a partial UTF-8 character (the approach of vLLM and TGI)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._prefix_start = 0  # the window starts here: context for a clean decode
        self._emitted_end = 0  # tokens before this are already emitted as text

    def push(self, token_id: int) -> str:
        self._ids.append(token_id)
        emitted = self._decode(self._ids[self._prefix_start : self._emitted_end])
        text = self._decode(self._ids[self._prefix_start :])
        if len(text) <= len(emitted) or text.endswith(REPLACEMENT_CHAR):
            return ""
        self._prefix_start, self._emitted_end = self._emitted_end, len(self._ids)
        return text[len(emitted) :]

    def flush(self) -> str:
        """What is still held back, partial characters shown as U+FFFD (at the end of a reply)."""
        emitted = self._decode(self._ids[self._prefix_start : self._emitted_end])
        text = self._decode(self._ids[self._prefix_start :])
        self._prefix_start = self._emitted_end = len(self._ids)
        return text[len(emitted) :]

    def _decode(self, ids: list[int]) -> str:
        text = self._tokenizer.decode(
            ids, skip_special_tokens=False, clean_up_tokenization_spaces=False
        )
        return str(text)


class _Phase(enum.Enum):
    OPENING = "opening"  # at the start, where an explicit <think> may come
    REASONING = "reasoning"
    ANSWER = "answer"


class ReasoningParser:
    """Text deltas in, reasoning and answer deltas out.

    `starts_in_reasoning`: the prompt ended inside the reasoning (R1's `<think>\\n`), so text
    before `</think>` is reasoning even with no opening tag. Set it False when the prompt closed
    the reasoning itself (no-think turns): then all text is answer unless the reply opens with
    `<think>`. A reply cut off before `</think>` is all reasoning.
    """

    def __init__(self, *, starts_in_reasoning: bool = True) -> None:
        self._initial = _Phase.REASONING if starts_in_reasoning else _Phase.ANSWER
        self._phase = _Phase.OPENING
        self._held = ""  # text that may still turn out to be (part of) a tag
        self._part_started = False  # the current part has had non-whitespace text
        self._trailing_space = ""  # whitespace held until more text of the part follows

    @property
    def in_answer(self) -> bool:
        phase = self._initial if self._phase is _Phase.OPENING else self._phase
        return phase is _Phase.ANSWER

    def feed(self, text: str) -> ReplyDelta:
        text = self._held + text
        self._held = ""
        if self._phase is _Phase.OPENING:
            text = self._after_opening(text)
            if self._phase is _Phase.OPENING:
                return ReplyDelta()
        if self._phase is _Phase.REASONING:
            before, closed, after = text.partition(CLOSE_TAG)
            if not closed:
                self._held = _partial_tag_suffix(before, CLOSE_TAG)
                return ReplyDelta(
                    reasoning=self._part_text(before[: len(before) - len(self._held)])
                )
            reasoning = self._part_text(before)
            self._enter(_Phase.ANSWER)
            return ReplyDelta(reasoning=reasoning, answer=self._answer_text(after))
        return ReplyDelta(answer=self._answer_text(text))

    def _answer_text(self, text: str) -> str:
        """Answer text without tags: a tag is never speech, even where a branch that was meant
        to answer writes one (an answer forked from a cut reasoning may close it again)."""
        text = text.replace(OPEN_TAG, "").replace(CLOSE_TAG, "")
        self._held = _partial_tag_suffix(text, CLOSE_TAG) or _partial_tag_suffix(text, OPEN_TAG)
        return self._part_text(text[: len(text) - len(self._held)])

    def finish(self) -> ReplyDelta:
        """The end of the reply: release held text (a partial tag is plain text after all)."""
        held, self._held = self._held, ""
        if self._phase is _Phase.OPENING:
            self._enter(self._initial)
        if self._phase is _Phase.REASONING:
            return ReplyDelta(reasoning=self._part_text(held))
        return ReplyDelta(answer=self._part_text(held))

    def _after_opening(self, text: str) -> str:
        """Consume an optional `<think>` at the very start; hold text that may still become it."""
        start = text.lstrip()
        if start.startswith(OPEN_TAG):
            self._enter(_Phase.REASONING)
            return start[len(OPEN_TAG) :]
        if not start or OPEN_TAG.startswith(start):
            self._held = text
            return ""
        self._enter(self._initial)
        return text

    def _enter(self, phase: _Phase) -> None:
        self._phase = phase
        self._part_started = False
        self._trailing_space = ""

    def _part_text(self, text: str) -> str:
        """Trim the current part: no leading whitespace, trailing whitespace held back."""
        if not self._part_started:
            text = text.lstrip()
            if not text:
                return ""
            self._part_started = True
        text = self._trailing_space + text
        kept = text.rstrip()
        self._trailing_space = text[len(kept) :]
        return kept


def _partial_tag_suffix(text: str, tag: str) -> str:
    """The longest end of `text` that is a proper beginning of `tag` ("</th" for "</think>")."""
    for size in range(min(len(text), len(tag) - 1), 0, -1):
        if tag.startswith(text[-size:]):
            return text[-size:]
    return ""


class ReplyParser:
    """Token ids of one reply in, reasoning and answer deltas out, until a stop id.

    The stop id ends the reply and is not text; tokens after it are ignored. `reasoning` and
    `answer` hold the whole text of each part so far.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        *,
        stop_ids: Collection[int] = (),
        starts_in_reasoning: bool = True,
    ) -> None:
        self._detokenizer = IncrementalDetokenizer(tokenizer)
        self._parser = ReasoningParser(starts_in_reasoning=starts_in_reasoning)
        self._stop_ids = frozenset(stop_ids)
        self.done = False
        self.reasoning = ""
        self.answer = ""

    @property
    def in_answer(self) -> bool:
        """The reasoning has closed: tokens from here on belong to the answer."""
        return self._parser.in_answer

    def push(self, token_id: int) -> ReplyDelta:
        if self.done:
            return ReplyDelta()
        if token_id in self._stop_ids:
            return self.finish()
        return self._record(self._parser.feed(self._detokenizer.push(token_id)))

    def finish(self) -> ReplyDelta:
        """End the reply (a stop id, max tokens, or a cancel): flush everything held back."""
        if self.done:
            return ReplyDelta()
        self.done = True
        delta = self._parser.feed(self._detokenizer.flush()) + self._parser.finish()
        return self._record(delta)

    def _record(self, delta: ReplyDelta) -> ReplyDelta:
        self.reasoning += delta.reasoning
        self.answer += delta.answer
        return delta
