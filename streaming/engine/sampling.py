"""Choosing the next token from logits: greedy, temperature, top-p, repetition penalty.

The semantics match transformers' logits processors (`RepetitionPenaltyLogitsProcessor`,
`TopPLogitsWarper`), so a sampling setting means the same here as in `generate()` and vLLM.
"""

from __future__ import annotations

import torch

from streaming.engine.base import SamplingParams


def apply_repetition_penalty(
    logits: torch.Tensor, seen: torch.Tensor, penalty: float
) -> torch.Tensor:
    """Make tokens already in the context (`seen`, a bool mask like `logits`) less likely:
    positive logits are divided by `penalty`, negative ones multiplied (CTRL, Keskar 2019)."""
    if penalty == 1.0:
        return logits
    penalised = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(seen, penalised, logits)


def top_p_mask(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Bool mask over the last dim of `probs`: the smallest set of most likely tokens whose mass
    reaches `top_p` (nucleus sampling, Holtzman 2019). The most likely token is always kept."""
    if top_p >= 1.0:
        return torch.ones_like(probs, dtype=torch.bool)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    keep_sorted = mass_before < top_p
    keep_sorted[..., 0] = True
    return torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)


def sample_token(
    logits: torch.Tensor,
    params: SamplingParams,
    seen: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> int:
    """One token id from `logits` [vocab] of one sequence. `seen` marks the context's token ids
    (needed only when `params.repetition_penalty != 1`)."""
    logits = logits.float()
    if params.repetition_penalty != 1.0:
        if seen is None:
            raise ValueError("a repetition penalty needs the mask of seen tokens")
        logits = apply_repetition_penalty(logits, seen, params.repetition_penalty)
    if params.temperature == 0:
        return int(logits.argmax())
    probs = torch.softmax(logits / params.temperature, dim=-1)
    probs = probs * top_p_mask(probs, params.top_p)
    return int(torch.multinomial(probs, 1, generator=generator))


def make_generator(params: SamplingParams, device: torch.device) -> torch.Generator | None:
    """A per-sequence random generator: seeded when `params.seed` is set, so that a seed repeats
    its output whatever else the engine runs; None for greedy decoding."""
    if params.temperature == 0:
        return None
    generator = torch.Generator(device=device)
    if params.seed is None:
        generator.seed()
    else:
        generator.manual_seed(params.seed)
    return generator
