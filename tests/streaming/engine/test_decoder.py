"""The decoder's building blocks: one-token attention and the static cache's slots."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from streaming.engine.decoder import attend_one_token
from streaming.engine.kv_cache import StaticKVCache


@pytest.mark.parametrize(("heads", "kv_heads"), [(4, 4), (8, 2), (6, 1)])
def test_one_token_attention_equals_sdpa_with_gqa_and_mask(heads, kv_heads):
    generator = torch.Generator().manual_seed(heads * 10 + kv_heads)
    batch, length, dim = 3, 11, 16
    query = torch.randn(batch, heads, 1, dim, generator=generator)
    keys = torch.randn(batch, kv_heads, length, dim, generator=generator)
    values = torch.randn(batch, kv_heads, length, dim, generator=generator)
    visible = torch.tensor([4, 11, 7])[:, None] > torch.arange(length)  # rows of other lengths
    mask = visible[:, None, None, :]
    expected = F.scaled_dot_product_attention(
        query, keys, values, attn_mask=mask, enable_gqa=kv_heads != heads
    )
    torch.testing.assert_close(attend_one_token(query, keys, values, mask), expected)


def test_cache_hands_out_the_lowest_free_slot_and_takes_it_back():
    cache = StaticKVCache(1, 3, 1, 8, 2, device=torch.device("cpu"), dtype=torch.float32)
    assert [cache.allocate() for _ in range(3)] == [0, 1, 2]
    assert cache.allocate() is None
    cache.release(1)
    assert cache.free_slots == 1
    assert cache.allocate() == 1
    with pytest.raises(ValueError):
        cache.release(5)
    cache.release(0)
    with pytest.raises(ValueError, match="already free"):
        cache.release(0)


def test_cache_writes_each_row_at_its_own_position_and_copies_prefixes():
    cache = StaticKVCache(2, 3, 1, 8, 2, device=torch.device("cpu"), dtype=torch.float32)
    keys = torch.arange(4.0).view(2, 1, 1, 2)  # two rows, one new position each
    cache.write(1, torch.tensor([2, 0]), torch.tensor([[5], [1]]), keys, -keys)
    assert cache.keys[1][2, 0, 5].tolist() == [0.0, 1.0]
    assert cache.keys[1][0, 0, 1].tolist() == [2.0, 3.0]
    assert cache.values[1][0, 0, 1].tolist() == [-2.0, -3.0]
    assert cache.keys[0].abs().sum() == 0  # other layers untouched
    cache.copy_prefix(2, 1, 6)
    assert torch.equal(cache.keys[1][1, :, :6], cache.keys[1][2, :, :6])
    gathered, _ = cache.read(1, [2, 0], torch.tensor([2, 0]), 6)
    assert gathered[0, 0, 5].tolist() == [0.0, 1.0] and gathered[1, 0, 1].tolist() == [2.0, 3.0]
