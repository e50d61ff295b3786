"""The reasoning scheduler on the torch engine, with a tiny checkpoint overfitted to fixed
replies (greedy decoding reproduces them, `</think>` included; see overfit_model.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from streaming.engine.base import FinishReason, SamplingParams
from streaming.engine.torch_engine import TorchEngine
from streaming.model.checkpoint import LoadedModel
from streaming.model.prompt import PromptBuilder
from streaming.reasoning import ReplyParser
from streaming.responder import AnswerDelta, ReasoningDelta
from streaming.scheduler import (
    EFFORT_MODES,
    NO_THINK,
    SPEAK_FIRST,
    THINK_FIRST,
    THINK_THEN_SPEAK,
    ReplyScheduler,
    ScheduleSettings,
    mode_for_effort,
    schedule_for,
)
from tests.streaming.overfit_model import (
    REPLIES,
    Reply,
    conversation_ids,
    greedy,
    overfit,
    target_ids,
)

TC, TR = 8, 4  # small segments, so that the ~30-token reasoning is cut several times
MAX_TOKENS = 64
LONG, SHORT = REPLIES  # reasoning of ~30 and ~15 tokens


@pytest.fixture(scope="module")
def loaded(tiny_checkpoint: Path) -> LoadedModel:
    return overfit(tiny_checkpoint)


@pytest.fixture
async def engine(loaded: LoadedModel) -> AsyncIterator[TorchEngine]:
    engine = TorchEngine(loaded.model.model, loaded.model.lm_head, max_slots=6, max_seq_len=256)
    yield engine
    await engine.close()


def _builder(loaded: LoadedModel) -> PromptBuilder:
    return PromptBuilder(loaded.tokenizer, loaded.special)


def _scheduler(
    loaded: LoadedModel, engine: TorchEngine, reply: Reply, effort: str, budget: int | None = None
) -> ReplyScheduler:
    builder = _builder(loaded)
    conversation = builder.build([], add_generation_prompt=False)
    conversation.token_ids = conversation_ids(builder, reply)
    settings = ScheduleSettings(reasoning_segment=TC, answer_segment=TR, reasoning_budget=budget)
    params = SamplingParams(max_tokens=MAX_TOKENS, stop_ids=loaded.special.stop_ids)

    def parser(starts_in_reasoning: bool) -> ReplyParser:
        return ReplyParser(
            loaded.tokenizer,
            stop_ids=loaded.special.stop_ids,
            starts_in_reasoning=starts_in_reasoning,
        )

    return ReplyScheduler(
        engine, builder, conversation, schedule_for(effort, settings), params, parser
    )


async def _run(scheduler: ReplyScheduler) -> tuple[str, str]:
    reasoning, answer = "", ""
    try:
        async for event in scheduler.events():
            if isinstance(event, ReasoningDelta):
                reasoning += event.text
            else:
                assert isinstance(event, AnswerDelta)
                answer += event.text
    finally:
        await scheduler.stop()
    return reasoning, answer


async def _single_sequence(
    loaded: LoadedModel, engine: TorchEngine, reply: Reply
) -> tuple[str, str]:
    """The reply of one uninterrupted R1 sequence on the same engine."""
    builder = _builder(loaded)
    prompt = builder.build([], add_generation_prompt=False)
    prompt.token_ids = conversation_ids(builder, reply) + builder.assistant_prefix()
    stream = await engine.submit(
        prompt, SamplingParams(max_tokens=MAX_TOKENS, stop_ids=loaded.special.stop_ids)
    )
    parser = ReplyParser(loaded.tokenizer, stop_ids=loaded.special.stop_ids)
    async for token in stream:
        parser.push(token)
    parser.finish()
    return parser.reasoning, parser.answer


def _check_segments(loaded: LoadedModel, scheduler: ReplyScheduler, reply: Reply) -> None:
    """Every answer segment's context is the conversation, exactly the reasoning written up to
    its cut, and the answer so far; the engine decoded it as a full recompute would."""
    builder = _builder(loaded)
    conversation = conversation_ids(builder, reply)
    reasoning = scheduler.parts.reasoning_ids
    newline = builder.encode("\n")
    answer_so_far: list[int] = []
    for segment in scheduler.segments:
        cut = len(segment.reasoning_ids)
        assert segment.reasoning_ids == reasoning[:cut]  # the reasoning as written, in order
        assert segment.answer_ids == answer_so_far
        closed = segment.reasoning_ids
        if not closed or not loaded.tokenizer.decode(closed[-1:]).endswith("\n"):
            closed = closed + newline
        expected = conversation + builder.assistant_prefix(closed, answer_so_far)
        assert segment.prompt_ids == expected
        generation_prompt = len(conversation) + len(builder.assistant_prefix())
        assert segment.forked_tokens >= generation_prompt + cut  # not prefilled again
        assert segment.generated == greedy(loaded, segment.prompt_ids, len(segment.generated))
        answer_so_far = answer_so_far + [
            t for t in segment.generated if t not in loaded.special.stop_ids
        ]
    assert answer_so_far == scheduler.parts.answer_ids


def test_efforts_map_to_modes() -> None:
    assert EFFORT_MODES == {
        "minimal": NO_THINK,
        "low": SPEAK_FIRST,
        "medium": THINK_FIRST,
        "high": THINK_FIRST,
        "xhigh": THINK_THEN_SPEAK,
    }
    assert mode_for_effort(None) == THINK_FIRST
    with pytest.raises(ValueError, match="unknown reasoning effort"):
        mode_for_effort("extreme")
    settings = ScheduleSettings(reasoning_segment=80, answer_segment=20)
    # the reasoning stays Tc ahead of the answer: Tr more reasoning per answer segment
    assert [schedule_for("medium", settings).cut(i) for i in range(3)] == [80, 100, 120]
    assert schedule_for("high", settings).cut(0) == 160  # more effort: a later first word
    assert [schedule_for("low", settings).cut(i) for i in range(3)] == [0, 20, 40]
    assert schedule_for("xhigh", settings).cut(0) is None  # the end of the reasoning


async def test_think_then_speak_is_one_uninterrupted_sequence(loaded, engine) -> None:
    reference = await _single_sequence(loaded, engine, LONG)
    scheduler = _scheduler(loaded, engine, LONG, "xhigh")
    reasoning, answer = await _run(scheduler)
    assert (reasoning, answer) == reference == (LONG.reasoning, LONG.answer)
    assert scheduler.segments == []  # the reasoning sequence went on to write the answer
    assert scheduler.complete
    builder = _builder(loaded)
    # usage counts each part: the reasoning up to </think>, the answer with its stop token
    written = target_ids(builder, LONG)
    close = written.index(loaded.special.think_end)
    assert scheduler.reasoning_tokens == close + 1
    assert scheduler.answer_tokens == len(written) - close - 1


@pytest.mark.parametrize("effort", ["medium", "high", "low"])
async def test_answer_segments_hold_the_reasoning_up_to_their_cut(loaded, engine, effort) -> None:
    scheduler = _scheduler(loaded, engine, LONG, effort)
    reasoning, answer = await _run(scheduler)
    schedule = scheduler.schedule
    assert len(scheduler.segments) >= 2, "the answer was written in several segments"
    for index, segment in enumerate(scheduler.segments):
        cut = schedule.cut(index)
        assert cut is not None
        # each segment waited for its cut; only the last may come earlier, at the reasoning's end
        assert len(segment.reasoning_ids) >= cut or segment is scheduler.segments[-1]
    _check_segments(loaded, scheduler, LONG)
    assert LONG.reasoning.startswith(reasoning)
    assert answer == loaded.tokenizer.decode(scheduler.parts.answer_ids).strip()
    assert scheduler.complete  # the answer ended with <|EOT|>


async def test_reasoning_stops_when_the_answer_ends(loaded, engine) -> None:
    scheduler = _scheduler(loaded, engine, LONG, "low")
    await _run(scheduler)
    assert scheduler.complete
    main = scheduler._main
    assert main is not None
    # the reasoning sequence was cancelled, or had closed its reasoning, by the end
    assert main.stream.output.finish_reason in (FinishReason.CANCELLED, FinishReason.STOP)
    assert (
        scheduler.parts.reasoning_ids
        == main.stream.output.token_ids[: len(scheduler.parts.reasoning_ids)]
    )


async def test_answer_goes_on_alone_after_the_reasoning(loaded, engine) -> None:
    # SHORT's reasoning (~17 tokens) ends before the second cut (2 Tc + Tr = 20): the last
    # segment is written unbounded.
    scheduler = _scheduler(loaded, engine, SHORT, "high")
    reasoning, answer = await _run(scheduler)
    assert reasoning == SHORT.reasoning
    last = scheduler.segments[-1]
    assert loaded.tokenizer.decode(last.reasoning_ids).strip() == SHORT.reasoning
    assert last.generated[-1] in loaded.special.stop_ids
    assert len(last.generated) > TR  # not cut into segments any more
    _check_segments(loaded, scheduler, SHORT)


async def test_reasoning_budget_closes_the_reasoning(loaded, engine) -> None:
    budget = 10
    scheduler = _scheduler(loaded, engine, LONG, "xhigh", budget=budget)
    reasoning, answer = await _run(scheduler)
    assert scheduler.reasoning_tokens == budget
    assert len(scheduler.parts.reasoning_ids) == budget
    [segment] = scheduler.segments  # think_then_speak: one answer, after the whole reasoning
    assert len(segment.reasoning_ids) == budget
    _check_segments(loaded, scheduler, LONG)
    assert reasoning == loaded.tokenizer.decode(segment.reasoning_ids).strip()
    assert answer  # the model answers from the truncated reasoning


async def test_no_think_writes_only_an_answer(loaded, engine) -> None:
    scheduler = _scheduler(loaded, engine, LONG, "minimal")
    reasoning, answer = await _run(scheduler)
    assert reasoning == "" and scheduler.reasoning_tokens == 0
    assert answer and scheduler.segments == []
