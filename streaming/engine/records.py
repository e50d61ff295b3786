"""What every engine remembers of its sequences so that it can fork them by recomputation (see
`base.Engine.fork`): each sequence's initial context and the ids it generated, for the
sequences waiting or running and for the last `ENDED_SEQUENCES_KEPT` that ended (cancelled ones
included). Whatever became of an engine's cache, a fork's context is rebuilt from these.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from streaming.engine.base import Prompt

# Ended sequences whose context (ids and audio rows, no cache) is remembered so that a fork of
# one still works: each holds its ids and its audio rows (which outlive the responder's audio
# cache), so the count is bounded by what forks need: a reply forks its own branches within
# seconds, and a few dozen replies run at once. Beyond it a fork fails with KeyError and the
# caller prefills the whole context (a soak of 32 sessions grew the server's memory by a quarter
# over ten minutes with 1024 kept).
ENDED_SEQUENCES_KEPT = 64


@dataclass(eq=False)
class SequenceRecord:
    """One sequence as a fork needs it: its initial context (a prompt, or a fork's, audio
    positions explicit) and the ids it generated so far."""

    seq_id: int
    prompt: Prompt
    generated: list[int] = field(default_factory=list)

    @property
    def length(self) -> int:
        """Positions of its context and generated tokens together."""
        return len(self.prompt) + len(self.generated)

    def whole_context(self) -> Prompt:
        """Its context and generated tokens as one prompt (the generated ids as plain text)."""
        return self.prompt.extend(self.generated)


R = TypeVar("R", bound=SequenceRecord)


class SequenceRecords(Generic[R]):
    """The sequences an engine knows: `active` (waiting or running) and `ended` (the last `kept`
    of them, the longest-ended first). Engines call `start` and `end`; a fork asks
    `fork_context`."""

    def __init__(self, kept: int) -> None:
        self.kept = kept
        self.active: dict[int, R] = {}
        self.ended: collections.OrderedDict[int, R] = collections.OrderedDict()

    def start(self, record: R) -> None:
        self.active[record.seq_id] = record

    def end(self, record: R) -> list[R]:
        """Move `record` to the ended ones; returns those forgotten to keep `kept`, oldest
        first (an engine may free what it held for them)."""
        self.active.pop(record.seq_id, None)
        self.ended[record.seq_id] = record
        forgotten = []
        while len(self.ended) > self.kept:
            forgotten.append(self.ended.popitem(last=False)[1])
        return forgotten

    def clear(self) -> None:
        self.active.clear()
        self.ended.clear()

    def fork_context(self, seq_id: int, position: int, suffix: Prompt) -> tuple[R, Prompt]:
        """The source of a fork and the context the fork will have: the source's first
        `position` tokens, then `suffix`. KeyError for a sequence that is not known (any more),
        ValueError for a position past its tokens."""
        source = self.active.get(seq_id) or self.ended.get(seq_id)
        if source is None:
            raise KeyError(f"sequence {seq_id} is unknown, or it ended long ago")
        if not 0 <= position <= source.length:
            raise ValueError(f"fork at {position} but sequence {seq_id} has {source.length} tokens")
        return source, source.whole_context().head(position).extend((), suffix)
