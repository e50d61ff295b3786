"""Sampling rules, checked against hand-worked cases and transformers' logits processors."""

from __future__ import annotations

import pytest
import torch
from transformers.generation.logits_process import (
    RepetitionPenaltyLogitsProcessor,
    TopPLogitsWarper,
)

from streaming.engine.base import SamplingParams
from streaming.engine.sampling import (
    apply_repetition_penalty,
    make_generator,
    sample_token,
    top_p_mask,
)

PROBS = torch.tensor([0.05, 0.5, 0.15, 0.3])


@pytest.mark.parametrize(
    ("top_p", "kept"),
    [
        (1.0, [0, 1, 2, 3]),
        (0.96, [0, 1, 2, 3]),  # 0.5 + 0.3 + 0.15 = 0.95 falls short: the last one stays
        (0.9, [1, 2, 3]),
        (0.8, [1, 3]),
        (0.81, [1, 2, 3]),
        (0.5, [1]),
        (0.01, [1]),  # the most likely token always stays
    ],
)
def test_top_p_keeps_the_smallest_nucleus(top_p, kept):
    mask = top_p_mask(PROBS, top_p)
    assert mask.nonzero().squeeze(1).tolist() == kept


@pytest.mark.parametrize("top_p", [0.3, 0.6, 0.8, 0.9, 0.99])
def test_top_p_agrees_with_transformers(top_p):
    logits = torch.randn(2, 50, generator=torch.Generator().manual_seed(0))
    ours = top_p_mask(torch.softmax(logits, dim=-1), top_p)
    theirs = TopPLogitsWarper(top_p)(None, logits.clone()) != -float("inf")
    assert torch.equal(ours, theirs)


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits():
    logits = torch.tensor([2.0, -2.0, 1.0, -1.0])
    seen = torch.tensor([True, True, False, False])
    assert apply_repetition_penalty(logits, seen, 2.0).tolist() == [1.0, -4.0, 1.0, -1.0]


def test_repetition_penalty_agrees_with_transformers():
    logits = torch.randn(1, 30, generator=torch.Generator().manual_seed(1))
    context = torch.tensor([[3, 7, 7, 12, 29]])
    seen = torch.zeros(30, dtype=torch.bool)
    seen[context[0]] = True
    ours = apply_repetition_penalty(logits[0], seen, 1.3)
    theirs = RepetitionPenaltyLogitsProcessor(1.3)(context, logits.clone())[0]
    assert torch.allclose(ours, theirs)


def test_repetition_penalty_can_change_the_greedy_choice():
    logits = torch.tensor([3.0, 2.0, 0.0])
    seen = torch.tensor([True, False, False])
    assert sample_token(logits, SamplingParams()) == 0
    assert sample_token(logits, SamplingParams(repetition_penalty=2.0), seen) == 1


def test_greedy_takes_the_argmax_without_randomness():
    logits = torch.tensor([0.1, 4.0, 3.9])
    assert make_generator(SamplingParams(), torch.device("cpu")) is None
    assert sample_token(logits, SamplingParams(temperature=0.0)) == 1


def test_sampling_never_leaves_the_nucleus():
    logits = torch.log(PROBS)
    params = SamplingParams(temperature=1.0, top_p=0.8, seed=3)
    generator = make_generator(params, torch.device("cpu"))
    draws = {sample_token(logits, params, generator=generator) for _ in range(300)}
    assert draws == {1, 3}


def test_a_seed_repeats_its_draws_and_seeds_differ():
    logits = torch.zeros(1000)

    def draws(seed: int) -> list[int]:
        params = SamplingParams(temperature=0.7, seed=seed)
        generator = make_generator(params, torch.device("cpu"))
        return [sample_token(logits, params, generator=generator) for _ in range(20)]

    assert draws(5) == draws(5)
    assert draws(5) != draws(6)


def test_temperature_sharpens_and_flattens():
    logits = torch.tensor([1.0, 0.0])

    def share_of_first(temperature: float) -> float:
        params = SamplingParams(temperature=temperature, seed=0)
        generator = make_generator(params, torch.device("cpu"))
        picks = [sample_token(logits, params, generator=generator) for _ in range(2000)]
        return picks.count(0) / len(picks)

    # Expected shares: sigmoid(1 / T) = 0.99995 at T=0.1, 0.73 at T=1, 0.52 at T=10.
    assert share_of_first(0.1) > 0.99
    assert 0.65 < share_of_first(1.0) < 0.81
    assert 0.42 < share_of_first(10.0) < 0.62


def test_max_tokens_and_temperature_are_validated():
    with pytest.raises(ValueError):
        SamplingParams(max_tokens=0)
    with pytest.raises(ValueError):
        SamplingParams(temperature=-1)
