"""A tiny random Qwen2 model (fixed seed, fp32, CPU) and the plain transformers reference."""

from __future__ import annotations

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

VOCAB = 256


def tiny_config() -> Qwen2Config:
    return Qwen2Config(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        rope_theta=10000.0,
        tie_word_embeddings=False,
    )


@pytest.fixture(scope="session")
def tiny_model() -> Qwen2ForCausalLM:
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(tiny_config()).eval()
    # Larger weights than the default init so that logits are spread and argmax ties are rare.
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.normal_(0, 0.2)
    return model


@pytest.fixture(scope="session")
def greedy_reference():
    """Tests take the reference through a fixture: test folders here are not packages."""
    return reference_greedy


@torch.inference_mode()
def reference_greedy(model: Qwen2ForCausalLM, embeds: torch.Tensor, steps: int) -> list[int]:
    """Greedy tokens by full recompute with transformers' own forward on `inputs_embeds`."""
    tokens: list[int] = []
    for _ in range(steps):
        logits = model(inputs_embeds=embeds[None]).logits[0, -1]
        token = int(logits.argmax())
        tokens.append(token)
        next_embed = model.model.embed_tokens(torch.tensor([token]))
        embeds = torch.cat([embeds, next_embed])
    return tokens
