"""Thinking while speaking: one reply as a reasoning branch and an answer branch
(docs/ARCHITECTURE.md, "Thinking while speaking").

Mind-Paced Speaking (StepFun, arXiv 2510.09592) runs two branches over one set of weights. The
reasoning branch is the plain R1 sequence: the conversation, `<|BOT|>assistant\\n<think>\\n`, then
the model's reasoning. The answer branch writes the spoken answer in segments of Tr tokens; each
segment is a new engine sequence whose context is

    conversation <|BOT|>assistant\\n<think>\\n{reasoning so far}\\n</think>\\n{answer so far}

forked from the reasoning sequence at the cut (`Engine.fork`), so the shared prefix (the whole
conversation, audio included, and the reasoning) is not prefilled again; only `</think>` and the
answer so far are. Every segment picks up the reasoning written since the last one.

Modes (`session.reasoning.effort` -> mode, see `EFFORT_MODES`):
- `no_think`: one sequence with an empty reasoning block; everything is answer.
- `think_then_speak`: plain R1, the baseline: the reasoning sequence closes its reasoning and goes
  on to write the answer itself, exactly as one uninterrupted sequence.
- `think_first`: the first answer segment starts after Tc reasoning tokens (2 Tc at effort
  high), each later one after Tr more, so the reasoning stays at least Tc tokens ahead of the
  answer and every segment sees newer reasoning.
- `speak_first`: the first answer segment starts at once, each later one after Tr more reasoning
  tokens (the reasoning never falls behind the answer).

Both branches decode in the same engine batch, at about the same rate, so the Tr pacing rarely
makes the answer wait, while a pacing of Tc per segment (the paper's strict interleaving) would
hold the first words back whenever the first segment is too short to end a clause for speech.

Reasoning stops when the answer ends; the answer goes on alone (one last segment, unbounded) when
the reasoning ends first. If the reasoning closes before any answer token was written, the
reasoning sequence simply goes on as the answer (no fork needed). A reasoning budget caps the
reasoning: at the budget the scheduler closes it itself, so every reply is bounded (and a model
with random weights, which rarely writes `</think>`, reasons exactly that many tokens).

This module's policy part (`mode_for_effort`, `schedule_for`) is pure and imports nothing heavy:
the server calls it to label its latency metrics by mode.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from streaming.responder import AnswerDelta, ReasoningDelta

if TYPE_CHECKING:
    from streaming.engine.base import Engine, Prompt, SamplingParams, TokenStream
    from streaming.model.prompt import PromptBuilder
    from streaming.reasoning import ReplyDelta, ReplyParser

NO_THINK = "no_think"
SPEAK_FIRST = "speak_first"
THINK_FIRST = "think_first"
THINK_THEN_SPEAK = "think_then_speak"
MODES = (NO_THINK, SPEAK_FIRST, THINK_FIRST, THINK_THEN_SPEAK)

EFFORT_MODES = {
    "minimal": NO_THINK,
    "low": SPEAK_FIRST,
    "medium": THINK_FIRST,
    "high": THINK_FIRST,
    "xhigh": THINK_THEN_SPEAK,
}
DEFAULT_EFFORT = "medium"  # used when neither the session nor the server names one
# The first cut of `think_first`, in reasoning segments (Tc), by effort: more effort, more
# thinking before the first word.
FIRST_CUT_SEGMENTS = {"medium": 1, "high": 2}

REASONING_SEGMENT_TOKENS = 80  # Tc, the paper's value
ANSWER_SEGMENT_TOKENS = 20  # Tr, the paper's value


def mode_for_effort(effort: str | None) -> str:
    """The scheduling mode of a `session.reasoning.effort` (None: the default effort)."""
    effort = effort or DEFAULT_EFFORT
    if effort not in EFFORT_MODES:
        raise ValueError(f"unknown reasoning effort {effort!r}; valid: {', '.join(EFFORT_MODES)}")
    return EFFORT_MODES[effort]


@dataclass(frozen=True)
class ScheduleSettings:
    reasoning_segment: int = REASONING_SEGMENT_TOKENS  # Tc
    answer_segment: int = ANSWER_SEGMENT_TOKENS  # Tr
    reasoning_budget: int | None = None  # most reasoning tokens; None: only max_output_tokens

    def __post_init__(self) -> None:
        if self.reasoning_segment < 1 or self.answer_segment < 1:
            raise ValueError("reasoning and answer segments must be at least one token")
        if self.reasoning_budget is not None and self.reasoning_budget < 0:
            raise ValueError(f"reasoning_budget must be >= 0, got {self.reasoning_budget}")


@dataclass(frozen=True)
class Schedule:
    """When each answer segment starts, in reasoning tokens written."""

    mode: str
    first_cut: int | None  # reasoning tokens before the first segment; None: the end of reasoning
    cut_step: int  # more reasoning tokens before each later segment
    answer_segment: int
    reasoning_budget: int | None

    def cut(self, segment: int) -> int | None:
        """Reasoning tokens segment `segment` (from 0) waits for; None: the end of reasoning."""
        if self.first_cut is None:
            return None
        return self.first_cut + segment * self.cut_step


def schedule_for(effort: str | None, settings: ScheduleSettings | None = None) -> Schedule:
    settings = settings or ScheduleSettings()
    mode = mode_for_effort(effort)
    tc = settings.reasoning_segment
    first_cut: int | None
    if mode == THINK_FIRST:
        first_cut = tc * FIRST_CUT_SEGMENTS[effort or DEFAULT_EFFORT]
    elif mode == THINK_THEN_SPEAK:
        first_cut = None
    else:
        first_cut = 0
    step = settings.answer_segment if mode in (THINK_FIRST, SPEAK_FIRST) else 0
    return Schedule(mode, first_cut, step, settings.answer_segment, settings.reasoning_budget)


# --- one reply ------------------------------------------------------------------------------


@dataclass
class AnswerSegment:
    """What one answer segment was conditioned on: kept for tests and logs."""

    reasoning_ids: list[int]  # the reasoning at its cut
    answer_ids: list[int]  # the answer so far when it started
    prompt_ids: list[int]  # its whole context
    forked_tokens: int  # context positions shared with an earlier sequence, not prefilled again
    generated: list[int]  # what it wrote (the engine's record, filled as it decodes)


@dataclass
class _Branch:
    """A running engine sequence and the token ids of its context (prompt, then generated)."""

    stream: TokenStream
    prompt_ids: list[int]

    @property
    def token_ids(self) -> list[int]:
        return self.prompt_ids + self.stream.output.token_ids

    @property
    def finished(self) -> bool:
        return self.stream.output.finish_reason is not None


@dataclass
class ReplyParts:
    """The token ids of a reply so far, by part."""

    reasoning_ids: list[int] = field(default_factory=list)
    answer_ids: list[int] = field(default_factory=list)


ReplyEvent = ReasoningDelta | AnswerDelta


class ReplyScheduler:
    """Runs one reply's branches on the engine and streams its reasoning and answer deltas.

    `conversation` is the prompt up to (not including) the assistant turn. `mark(stage)` is
    called when a stage is first reached (prefill: the first generated token). `submit` starts
    the reasoning sequence (by default `engine.submit`; the responder forks a sequence that
    already holds the start of the conversation).
    Iterate `events()` once, then call `stop()` (also after an early exit).
    """

    def __init__(
        self,
        engine: Engine,
        builder: PromptBuilder,
        conversation: Prompt,
        schedule: Schedule,
        params: SamplingParams,
        new_parser: Callable[[bool], ReplyParser],
        mark: Callable[[str], None] = lambda stage: None,
        submit: Callable[[Prompt, SamplingParams], Awaitable[TokenStream]] | None = None,
    ) -> None:
        self.engine = engine
        self._submit_main = submit or engine.submit
        self.builder = builder
        self.conversation = conversation
        self.schedule = schedule
        self.params = params
        self.mark = mark
        self.parts = ReplyParts()
        self.segments: list[AnswerSegment] = []
        self.reasoning_tokens = 0
        self.answer_tokens = 0
        self.complete = False  # the answer ended with a stop id
        self._stop_ids = frozenset(params.stop_ids)
        self._no_think = schedule.mode == NO_THINK
        self._main_parser = new_parser(not self._no_think)
        self._answer_parser = new_parser(False)
        self._main: _Branch | None = None
        self._segment: _Branch | None = None
        self._reasoning_done = self._no_think
        self._main_speaks = self._no_think  # the reasoning sequence writes the answer itself
        self._answer_done = False
        self._progress = asyncio.Event()  # set whenever the reasoning grows or ends
        self._pending_tokens = 0  # tokens decoded since the last delta went out
        self._queue: asyncio.Queue[ReplyEvent | BaseException | None] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    async def events(self) -> AsyncIterator[ReplyEvent]:
        prefix = self.builder.assistant_prefix("" if self._no_think else None)
        self._main = await self._submit(self.conversation.token_ids + prefix, self.params)
        branches = [self._run_main()] + ([] if self._no_think else [self._run_answer()])
        self._tasks = [asyncio.create_task(self._produce(branch)) for branch in branches]
        running = len(self._tasks)
        while running:
            event = await self._queue.get()
            if event is None:
                running -= 1
            elif isinstance(event, BaseException):
                raise event
            else:
                yield event

    async def stop(self) -> None:
        """Cancel what still runs: the consumers and every unfinished engine sequence."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for branch in (self._main, self._segment):
            if branch is not None and not branch.finished:
                await self.engine.cancel(branch.stream.seq_id)

    async def _produce(self, branch: object) -> None:
        try:
            await branch  # type: ignore[misc]
        except Exception as error:  # handed to the consumer, which raises it
            self._queue.put_nowait(error)
        else:
            self._queue.put_nowait(None)

    # --- the reasoning sequence --------------------------------------------------------------

    async def _run_main(self) -> None:
        assert self._main is not None
        parser = self._main_parser
        async for token in self._main.stream:
            self.mark("prefill")  # time to the first generated token
            self._pending_tokens += 1
            if parser.in_answer:  # it speaks: no_think, or it closed the reasoning first
                self.answer_tokens += 1
                self._emit(parser.push(token))
                continue
            if self._reasoning_done:
                break  # closed by the budget; the cancel is on its way
            self.reasoning_tokens += 1
            self.parts.reasoning_ids.append(token)
            self._emit(parser.push(token), answer=self._main_speaks)
            if parser.in_answer:
                await self._close_reasoning(by_model=True)
            elif self._budget_reached():
                await self._close_reasoning(by_model=False)
            self._progress.set()
        self._emit(parser.finish(), answer=self._main_speaks)
        if self._main_speaks:
            self._answer_done = True
            self.complete = self._main.stream.output.finish_reason == "stop"
        elif not self._reasoning_done:  # it ended inside the reasoning (length, stop, cancel)
            self._reasoning_done = True
        self._progress.set()

    def _budget_reached(self) -> bool:
        budget = self.schedule.reasoning_budget
        return budget is not None and len(self.parts.reasoning_ids) >= budget

    async def _close_reasoning(self, by_model: bool) -> None:
        """The reasoning is over: the model wrote `</think>`, or the budget was reached."""
        self._reasoning_done = True
        if by_model:
            self.parts.reasoning_ids = self._without_close_tag(self.parts.reasoning_ids)
        if by_model and not self.parts.answer_ids:
            # Nothing was said yet: the reasoning sequence goes on as the answer, as plain R1.
            self._main_speaks = True
            if self._segment is not None and not self._segment.finished:
                await self.engine.cancel(self._segment.stream.seq_id)
            answer = self._main_parser.answer  # text after `</think>` in the same push
            if answer:
                self._emit_answer_text(answer)
        else:
            assert self._main is not None
            await self.engine.cancel(self._main.stream.seq_id)

    def _without_close_tag(self, ids: list[int]) -> list[int]:
        """The reasoning ids without the `</think>` that closed them (one token, or pieces)."""
        close = self.builder.special.think_end
        if close is not None:
            return ids[: ids.index(close)] if close in ids else ids
        from streaming.reasoning import CLOSE_TAG

        kept = list(ids)
        while kept and CLOSE_TAG in self._decode(kept[-len(CLOSE_TAG) :]):
            kept.pop()
        return kept

    def _decode(self, ids: list[int]) -> str:
        return str(self.builder.tokenizer.decode(ids, skip_special_tokens=False))

    # --- the answer segments -----------------------------------------------------------------

    async def _run_answer(self) -> None:
        segment = 0
        while not self._answer_done:
            await self._wait_for_cut(self.schedule.cut(segment))
            if self._main_speaks or self._answer_done:
                return
            limit = self.params.max_tokens - len(self.parts.answer_ids)
            if limit <= 0:
                break
            size = limit if self._reasoning_done else min(self.schedule.answer_segment, limit)
            branch = await self._start_segment(size)
            produced = await self._read_segment(branch)
            if self._main_speaks:  # the reasoning closed before it said anything
                if not branch.finished:  # (it may have started after that cancel)
                    await self.engine.cancel(branch.stream.seq_id)
                return
            reason = branch.stream.output.finish_reason
            if reason == "stop":
                self.complete = True
                break
            if reason != "length" or produced < size:
                break  # cancelled, or the context is full
            segment += 1
        self._answer_done = True
        self._emit(self._answer_parser.finish())
        assert self._main is not None
        if not self._main.finished:
            await self.engine.cancel(self._main.stream.seq_id)  # nothing more to think about

    async def _wait_for_cut(self, cut: int | None) -> None:
        while not self._cut_reached(cut):
            self._progress.clear()
            await self._progress.wait()

    def _cut_reached(self, cut: int | None) -> bool:
        assert self._main is not None
        if self._main_speaks or self._answer_done:
            return True
        if not self._main.stream.output.token_ids and not self._main.finished:
            return False  # its prompt is not prefilled yet: a fork now would prefill it twice
        return self._reasoning_done or (cut is not None and len(self.parts.reasoning_ids) >= cut)

    async def _read_segment(self, branch: _Branch) -> int:
        produced = 0
        async for token in branch.stream:
            if self._main_speaks:
                break  # tokens queued before its cancel: the reasoning sequence speaks instead
            produced += 1
            self.answer_tokens += 1
            self._pending_tokens += 1
            if token not in self._stop_ids:
                self.parts.answer_ids.append(token)
            self._emit(self._answer_parser.push(token))
        return produced

    async def _start_segment(self, max_tokens: int) -> _Branch:
        """Fork the answer prompt from the sequence that shares most of it (no prefill again)."""
        reasoning, answer = list(self.parts.reasoning_ids), list(self.parts.answer_ids)
        closed = reasoning + self._closing_newline(reasoning)
        ids = self.conversation.token_ids + self.builder.assistant_prefix(closed, answer)
        params = replace(self.params, max_tokens=max_tokens)
        sources = [b for b in (self._main, self._segment) if b is not None]
        source = max(sources, key=lambda b: _common_prefix(b.token_ids, ids))
        shared = _common_prefix(source.token_ids, ids)
        # A fork never fails for want of cache: an engine recomputes what it no longer holds.
        stream = await self.engine.fork(source.stream.seq_id, shared, ids[shared:], params)
        self.segments.append(AnswerSegment(reasoning, answer, ids, shared, stream.output.token_ids))
        self._segment = _Branch(stream, ids)
        return self._segment

    def _closing_newline(self, reasoning: list[int]) -> list[int]:
        """The newline before `</think>` (the format's `{reasoning}\\n</think>`), where a cut
        reasoning lacks it; a reasoning the model closed itself ends with its own."""
        if reasoning and self._decode(reasoning[-1:]).endswith("\n"):
            return []
        return self.builder.encode("\n")

    async def _submit(self, ids: list[int], params: SamplingParams) -> _Branch:
        return _Branch(await self._submit_main(self._prompt(ids), params), ids)

    def _prompt(self, ids: list[int]) -> Prompt:
        return replace(self.conversation, token_ids=ids)

    # --- events ------------------------------------------------------------------------------

    def _emit(self, delta: ReplyDelta, answer: bool = True) -> None:
        if delta.reasoning:
            self._put(ReasoningDelta(delta.reasoning))
        if delta.answer and answer:
            self._emit_answer_text(delta.answer)

    def _emit_answer_text(self, text: str) -> None:
        self._put(AnswerDelta(text))

    def _put(self, event: ReplyEvent) -> None:
        event.tokens, self._pending_tokens = self._pending_tokens, 0
        self._queue.put_nowait(event)


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n
