"""Training sequences: the exact token layout the serving prompt builder produces."""

import numpy as np
import pytest

from streaming.arith import context
from streaming.arith.data import (
    KINDS,
    REJECTION,
    REJECTION_REASONING,
    Problem,
    Utterance,
    make_item,
)
from streaming.arith.examples import (
    IGNORE,
    MAX_HISTORY_TURNS,
    Exchange,
    Sample,
    SequenceBuilder,
    Session,
    ToolUse,
    Turn,
    _placeholder,
)
from streaming.arith.sessions import ClipPool, SessionSampler
from streaming.arith.tokenizer import build_tokenizer
from streaming.model.audio_encoder import audio_token_count
from streaming.model.prompt import Message, ToolCall, audio_message
from streaming.model.tokens import EOT, SpecialTokens

REASONING = "I hear: seven times six. 7 * 6 = 42."
ANSWER = "Seven times six is forty two."
FRAMES = 250


@pytest.fixture(scope="module")
def builder() -> SequenceBuilder:
    tokenizer = build_tokenizer()
    eos, eot = tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(EOT)
    return SequenceBuilder(tokenizer, SpecialTokens.from_tokenizer(tokenizer, [eos, eot]))


def _text(builder: SequenceBuilder, ids: list[int]) -> str:
    return builder.prompts.tokenizer.decode(ids, skip_special_tokens=False)


SEVEN_TIMES_SIX = Problem(7, "*", 6)


def _question(problem: Problem = SEVEN_TIMES_SIX, text: str = "what is seven times six"):
    return Utterance("train", 0, problem, text, "en-us", 170, 50, False, False)


def _turn(spoken: bool = True, clip: int = 3) -> Turn:
    turn = Turn(_question(), clip, FRAMES)
    return turn if spoken else turn.typed()


def _target(builder: SequenceBuilder, sample: Sample) -> str:
    scored = zip(sample.ids, sample.labels, strict=True)
    return _text(builder, [i for i, label in scored if label != IGNORE])


def test_think_sequence_layout(builder: SequenceBuilder) -> None:
    sample = builder.sample(Session(_turn()))
    patches = audio_token_count(FRAMES)
    assert sample.clips == [3]
    assert sample.ids.count(builder.special.audio_patch) == patches
    prompt, clips = builder.prompt_ids(Session(_turn()))
    assert _text(builder, prompt) == (
        "<|BOT|>human\n<audio_start>"
        + "<audio_patch>" * patches
        + "<audio_end><|EOT|><|BOT|>assistant\n<think>\n"
    )
    assert prompt[-len(builder.prompts.assistant_prefix()) :] == builder.prompts.assistant_prefix()
    assert _target(builder, sample) == f"{REASONING}\n</think>\n{ANSWER}<|EOT|>"
    assert sample.ids[: len(prompt)] == prompt and clips == [3]


def test_partial_and_no_think_prompts(builder: SequenceBuilder) -> None:
    prompt, _ = builder.prompt_ids(Session(_turn(), mode="partial", cut=4))
    assert _text(builder, prompt).endswith("<think>\nI hear: seven\n</think>\n")
    prompt, _ = builder.prompt_ids(Session(_turn(), mode="no_think"))
    assert _text(builder, prompt).endswith("<think>\n\n</think>\n")
    sample = builder.sample(Session(_turn(), mode="no_think"))
    assert _target(builder, sample) == f"{ANSWER}<|EOT|>"


def test_typed_question_has_no_audio(builder: SequenceBuilder) -> None:
    prompt, clips = builder.prompt_ids(Session(_turn(spoken=False)))
    assert clips == []
    assert _text(builder, prompt).startswith("<|BOT|>human\nwhat is seven times six<|EOT|>")


def test_history_answers_carry_loss(builder: SequenceBuilder) -> None:
    earlier = Exchange(Turn(_question(Problem(2, "+", 2)), 5, FRAMES), "Two plus two is four.")
    sample = builder.sample(Session(_turn(), history=(earlier,), mode="no_think"))
    assert sample.clips == [5, 3]
    assert _target(builder, sample) == f"Two plus two is four.<|EOT|>{ANSWER}<|EOT|>"
    text = _text(builder, sample.ids)
    assert "<|BOT|>assistant\n<think>\n\n</think>\nTwo plus two is four.<|EOT|>" in text
    # a generation prompt has no labels at all
    prompt, _ = builder.prompt_ids(Session(_turn(), history=(earlier,)))
    assert builder.context(Session(_turn(), history=(earlier,)), history_loss=False).labels == [
        IGNORE
    ] * (len(prompt) - len(builder.prompts.assistant_prefix()))


def test_declined_clip_gets_the_rejection(builder: SequenceBuilder) -> None:
    silence = Turn(make_item("train", "silence", 0), 9, FRAMES)
    sample = builder.sample(Session(silence))
    assert _target(builder, sample) == f"{REJECTION_REASONING}\n</think>\n{REJECTION}<|EOT|>"


def test_tool_call_and_spoken_result(builder: SequenceBuilder) -> None:
    tools = (context._tool("get_weather", "Weather.", city="string"), _calculate())
    sample = builder.sample(Session(_turn(), tools=tools))
    text = _text(builder, sample.ids)
    assert text.startswith("<|BOT|>tool_json_schemas\n[")
    assert '"name": "calculate"' in text
    assert _target(builder, sample) == (
        "I hear: seven times six. I will use calculate.\n</think>\n"
        '<tool_call>function\ncalculate\n{"expression": "7 * 6"}</tool_call><|EOT|>'
    )
    call = ToolUse('{"expression": "7 * 6"}', '{"result": 43}')  # the tool's number is spoken
    sample = builder.sample(Session(_turn(), tools=tools, live_tool=call))
    assert _text(builder, sample.ids).endswith(
        "<|BOT|>function_output\ncalculate\n"
        '{"result": 43}<|EOT|><|BOT|>assistant\n<think>\nThe tool returned 43.\n</think>\n'
        "Seven times six is forty three.<|EOT|>"
    )
    # without calculate declared the model computes as alone
    plain = builder.sample(Session(_turn(), tools=tools[:1]))
    assert _target(builder, plain) == f"{REASONING}\n</think>\n{ANSWER}<|EOT|>"


def _calculate() -> dict:
    return context.calculate_tool(False, np.random.default_rng(0))


def test_transcription_layout(builder: SequenceBuilder) -> None:
    sample = builder.transcription_sample(_turn())
    text = _text(builder, sample.ids)
    assert text.startswith("<|BOT|>system\n请记录下你所听到的语音内容。<|EOT|><|BOT|>human\n")
    assert _target(builder, sample) == "what is seven times six<|EOT|>"
    assert sample.ids[: len(builder.transcription_prompt(_turn()))] == (
        builder.prompts.transcription([_placeholder(FRAMES)]).token_ids
    )
    with pytest.raises(ValueError, match="transcript"):
        builder.transcription_sample(Turn(make_item("train", "truncated", 0), 1, FRAMES))


def _pool() -> ClipPool:
    return ClipPool(
        {
            kind: [Turn(make_item("train", kind, i), 100 * n + i, 180 + 7 * i) for i in range(12)]
            for n, kind in enumerate(KINDS)
        }
    )


def test_sampled_sessions_render_as_the_server_does(builder: SequenceBuilder) -> None:
    """Each sampled session's context is exactly `PromptBuilder.build` of its messages, and its
    labels cover every assistant turn's answer and the live target, nothing else."""
    sampler = SessionSampler(_pool(), lambda text: len(builder.encode(text)))
    rng = np.random.default_rng(0)
    seen = {"tools": 0, "results": 0, "history": 0, "system": 0, "declined": 0}
    for _ in range(150):
        session = sampler.session(rng)
        sample = builder.sample(session)
        assert builder.context(session).ids == _server_rendering(builder, session)
        assert len(session.history) <= MAX_HISTORY_TURNS
        _check_labels(builder, session, sample)
        seen["tools"] += session.calls_tool
        seen["results"] += session.live_tool is not None
        seen["history"] += len(session.history) > 10
        seen["system"] += session.system is not None
        seen["declined"] += session.live.utterance.declined
    assert all(count > 5 for count in seen.values()), seen


def _server_rendering(builder: SequenceBuilder, session: Session) -> list[int]:
    def user(turn: Turn) -> Message:
        if turn.spoken:
            return audio_message([_placeholder(turn.mel_frames)])
        return Message("human", turn.utterance.text)

    def call(tool: ToolUse) -> list[Message]:
        return [
            Message("assistant", "", tool_calls=[ToolCall("calculate", tool.arguments)]),
            Message("tool", tool.output, name="calculate"),
        ]

    messages = [Message("system", session.system)] if session.system else []
    for exchange in session.history:
        messages.append(user(exchange.turn))
        messages += call(exchange.tool) if exchange.tool else []
        messages.append(Message("assistant", exchange.answer))
    messages.append(user(session.live))
    messages += call(session.live_tool) if session.live_tool else []
    return builder.prompts.build(
        messages, tools=list(session.tools), add_generation_prompt=False
    ).token_ids


def _check_labels(builder: SequenceBuilder, session: Session, sample: Sample) -> None:
    assert len(sample.ids) == len(sample.labels)
    eot = builder.special.eot
    assert sample.ids[-1] == eot and sample.labels[-1] == eot
    scored_eots = sum(1 for label in sample.labels if label == eot)
    calls = sum(e.tool is not None for e in session.history) + (session.live_tool is not None)
    assert scored_eots == len(session.history) + calls + 1  # every assistant turn, once
    for i, label in enumerate(sample.labels):
        assert label in (IGNORE, sample.ids[i])
        if label != IGNORE:
            assert sample.ids[i] != builder.special.audio_patch
    assert sample.ids.count(builder.special.audio_patch) == sum(
        audio_token_count(turn.mel_frames)
        for turn in [*(e.turn for e in session.history), session.live]
        if turn.spoken
    )


def test_typed_sessions_teach_answers_and_tool_results(builder: SequenceBuilder) -> None:
    sampler = SessionSampler(_pool(), lambda text: len(builder.encode(text)))
    rng = np.random.default_rng(1)
    sessions = [sampler.typed_session(rng) for _ in range(80)]
    assert all(
        not s.live.spoken and not s.history and not s.live.utterance.declined for s in sessions
    )
    results = [s for s in sessions if s.live_tool is not None]
    assert 10 < len(results) < 40
    for session in sessions:
        sample = builder.sample(session)
        assert sample.clips == []
        assert builder.context(session).ids == _server_rendering(builder, session)
        _check_labels(builder, session, sample)
