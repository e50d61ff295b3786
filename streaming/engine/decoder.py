"""A batched forward pass over a transformers Qwen2 decoder's weights, with a static KV cache.

transformers' own forward keeps one cache per batch and one position per row of a padded batch.
Here each row of a batch is a different sequence in its own cache slot at its own position, so the
decode steps of many conversations of different lengths run as one batch. The weights and small
modules (projections, RMS norms, MLP, rotary tables) are the transformers modules themselves; only
the attention bookkeeping is ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.qwen2.modeling_qwen2 import (
    Qwen2Attention,
    Qwen2DecoderLayer,
    Qwen2Model,
    apply_rotary_pos_emb,
)

from streaming.engine.kv_cache import StaticKVCache


@dataclass(frozen=True)
class _BatchLayout:
    """Where the rows of one forward read and write the cache; shared by all layers."""

    slots: list[int]
    slot_index: torch.Tensor  # [batch], the slots as a tensor
    positions: torch.Tensor  # [batch, T]
    length: int  # keys attended to: positions 0 .. length - 1 of each slot
    mask: torch.Tensor | None  # [batch, 1, T, length], True where a key is visible
    cos: torch.Tensor  # [batch, T, head_dim]
    sin: torch.Tensor


class CachedDecoder:
    """Qwen2 decoder + lm_head over a `StaticKVCache` of `max_slots` x `max_len` positions."""

    def __init__(
        self,
        decoder: Qwen2Model,
        lm_head: nn.Linear,
        *,
        max_slots: int,
        max_len: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        config = decoder.config
        if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", False):
            raise NotImplementedError("sliding-window attention is not supported by this engine")
        self.decoder = decoder
        self.lm_head = lm_head
        self.n_heads = config.num_attention_heads
        self.kv_heads: int = config.num_key_value_heads or self.n_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.n_heads
        self.device = device
        self.dtype = dtype
        self.cache = StaticKVCache(
            config.num_hidden_layers,
            max_slots,
            self.kv_heads,
            max_len,
            self.head_dim,
            device=device,
            dtype=dtype,
        )
        self.cos, self.sin = self._rotary_tables(max_len)

    def _rotary_tables(self, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin [max_len, head_dim] from the model's own rotary module, computed once."""
        positions = torch.arange(max_len, device=self.device)[None]
        probe = torch.empty(0, device=self.device, dtype=self.dtype)
        with torch.inference_mode():
            cos, sin = self.decoder.rotary_emb(probe, positions)
        return cos[0], sin[0]

    def embed(self, token_ids: list[int]) -> torch.Tensor:
        """[len, hidden] token embeddings."""
        ids = torch.tensor(token_ids, dtype=torch.long, device=self.device)
        return self.decoder.embed_tokens(ids)

    def forward(self, embeds: torch.Tensor, slots: list[int], starts: list[int]) -> torch.Tensor:
        """Run `embeds` [batch, T, hidden] through the decoder; row b holds the T tokens of the
        sequence in slot `slots[b]` at positions starts[b] .. starts[b] + T - 1, and attends to
        that slot's cache before them. Writes their keys/values; returns normed hidden states."""
        layout = self._layout(embeds.shape[1], slots, starts)
        hidden = embeds
        for layer_index, module in enumerate(self.decoder.layers):
            layer = cast(Qwen2DecoderLayer, module)
            normed = layer.input_layernorm(hidden)
            hidden = hidden + self._attention(layer.self_attn, layer_index, normed, layout)
            hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
        return self.decoder.norm(hidden)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(hidden)

    def _layout(self, steps: int, slots: list[int], starts: list[int]) -> _BatchLayout:
        positions = torch.tensor(starts, device=self.device)[:, None] + torch.arange(
            steps, device=self.device
        )
        length = max(starts) + steps
        mask = None  # one sequence, one new token: every cached key is visible
        if positions.shape != (1, 1):
            keys = torch.arange(length, device=self.device)
            mask = (keys[None, None, :] <= positions[:, :, None])[:, None]
        return _BatchLayout(
            slots=slots,
            slot_index=torch.tensor(slots, device=self.device),
            positions=positions,
            length=length,
            mask=mask,
            cos=self.cos[positions],
            sin=self.sin[positions],
        )

    def _attention(
        self, attn: Qwen2Attention, layer_index: int, hidden: torch.Tensor, layout: _BatchLayout
    ) -> torch.Tensor:
        batch, steps, _ = hidden.shape
        query = attn.q_proj(hidden).view(batch, steps, self.n_heads, self.head_dim).transpose(1, 2)
        key = attn.k_proj(hidden).view(batch, steps, self.kv_heads, self.head_dim).transpose(1, 2)
        value = attn.v_proj(hidden).view(batch, steps, self.kv_heads, self.head_dim).transpose(1, 2)
        query, key = apply_rotary_pos_emb(query, key, layout.cos, layout.sin)
        self.cache.write(layer_index, layout.slot_index, layout.positions, key, value)
        keys, values = self.cache.read(layer_index, layout.slots, layout.slot_index, layout.length)
        if steps == 1 and query.device.type == "cpu":
            out = attend_one_token(query, keys, values, layout.mask)
        else:
            out = F.scaled_dot_product_attention(
                query, keys, values, attn_mask=layout.mask, enable_gqa=self.kv_heads != self.n_heads
            )
        return attn.o_proj(out.transpose(1, 2).reshape(batch, steps, self.n_heads * self.head_dim))


def attend_one_token(
    query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """Attention of one new token per row: query [batch, heads, 1, d] over keys/values
    [batch, kv_heads, length, d], mask [batch, 1, 1, length] or None.

    On CPU, SDPA's flash kernel fans even this tiny problem out over all threads, and each such
    barrier costs milliseconds on a busy machine (measured: ~5 ms against 16 us for these two
    small matmuls with 2 threads on 2 shared cores), once per layer per decode step.
    """
    batch, heads, _, dim = query.shape
    kv_heads, length = keys.shape[1], keys.shape[2]
    # Query head h reads KV head h // (heads // kv_heads), as transformers' repeat_kv arranges.
    grouped = query.view(batch, kv_heads, heads // kv_heads, dim)
    scores = (grouped @ keys.transpose(-1, -2)).float() * dim**-0.5  # [batch, kv_heads, g, len]
    if mask is not None:
        scores = scores.masked_fill(~mask.view(batch, 1, 1, length), float("-inf"))
    weights = scores.softmax(dim=-1).to(values.dtype)
    return (weights @ values).view(batch, heads, 1, dim)
