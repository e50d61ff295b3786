"""Training sequences: the exact token layout the serving prompt builder produces."""

import numpy as np
import pytest

from streaming.arith.examples import IGNORE, Sample, SequenceBuilder, Turn
from streaming.arith.tokenizer import build_tokenizer
from streaming.model.audio_encoder import audio_token_count
from streaming.model.tokens import EOT, SpecialTokens

REASONING = "I hear: seven times six. 7 * 6 = 42."
ANSWER = "Seven times six is forty two."


@pytest.fixture(scope="module")
def builder() -> SequenceBuilder:
    tokenizer = build_tokenizer()
    eos, eot = tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(EOT)
    return SequenceBuilder(tokenizer, SpecialTokens.from_tokenizer(tokenizer, [eos, eot]))


def _text(builder: SequenceBuilder, ids: list[int]) -> str:
    return builder.prompts.tokenizer.decode(ids, skip_special_tokens=False)


def _turn(spoken: bool = True) -> Turn:
    return Turn(
        clip=3,
        mel_frames=250,
        reasoning=REASONING,
        answer=ANSWER,
        text="what is seven times six",
        spoken=spoken,
    )


def test_think_sequence_layout(builder: SequenceBuilder) -> None:
    context, clips = builder.prompt_ids(_turn(), mode="think")
    target = builder.target_ids(_turn(), "think")
    patches = audio_token_count(250)
    assert clips == [3]
    assert context.count(builder.special.audio_patch) == patches
    assert _text(builder, context) == (
        "<|BOT|>human\n<audio_start>"
        + "<audio_patch>" * patches
        + "<audio_end><|EOT|><|BOT|>assistant\n<think>\n"
    )
    assert _text(builder, target) == f"{REASONING}\n</think>\n{ANSWER}<|EOT|>"
    # The context ends with exactly the serving generation prompt.
    assert context[-len(builder.prompts.assistant_prefix()) :] == builder.prompts.assistant_prefix()


def test_partial_and_no_think_prompts(builder: SequenceBuilder) -> None:
    context, _ = builder.prompt_ids(_turn(), mode="partial", cut=4)
    assert _text(builder, context).endswith("<think>\nI hear: seven\n</think>\n")
    context, _ = builder.prompt_ids(_turn(), mode="no_think")
    assert _text(builder, context).endswith("<think>\n\n</think>\n")
    assert context[-6:] == builder.prompts.assistant_prefix(reasoning="")[-6:]
    assert _text(builder, builder.target_ids(_turn(), "no_think")) == f"{ANSWER}<|EOT|>"


def test_typed_question_has_no_audio(builder: SequenceBuilder) -> None:
    context, clips = builder.prompt_ids(_turn(spoken=False), mode="think")
    assert clips == []
    assert _text(builder, context).startswith("<|BOT|>human\nwhat is seven times six<|EOT|>")


def test_sampled_labels_cover_only_the_target(builder: SequenceBuilder) -> None:
    rng = np.random.default_rng(0)
    others = [_turn()]
    counts = {1: 0, 2: 0}
    for _ in range(50):
        samples = builder.samples(_turn(), others, rng)
        counts[len(samples)] += 1
        if len(samples) == 2:  # spoken: think, then an answer-only sequence of the same clip
            assert samples[0].clips[-1] == samples[1].clips[-1] == 3
            assert samples[0].labels.count(builder.special.think_end) == 1
            assert builder.special.think_end not in samples[1].labels
        for sample in samples:
            _check_labels(builder, sample)
    assert counts[1] and counts[2]


def _check_labels(builder: SequenceBuilder, sample: Sample) -> None:
    assert len(sample.ids) == len(sample.labels)
    scored = [i for i, label in enumerate(sample.labels) if label != IGNORE]
    assert scored == list(range(scored[0], len(sample.ids)))  # one suffix
    assert sample.ids[scored[-1]] == builder.special.eot
    assert sample.ids.count(builder.special.audio_patch) == (
        len(sample.clips) * audio_token_count(250)
    )
