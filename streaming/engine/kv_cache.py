"""A static key/value cache: one preallocated buffer per layer, one row ("slot") per sequence.

Shapes follow gpt-fast: keys and values of layer i are [slots, kv_heads, max_len, head_dim],
allocated once and written in place, so decoding never reallocates. A sequence owns one slot
from admission until it ends; its position p lives at [slot, :, p].
"""

from __future__ import annotations

from collections.abc import Collection

import torch


class StaticKVCache:
    def __init__(
        self,
        n_layers: int,
        max_slots: int,
        kv_heads: int,
        max_len: int,
        head_dim: int,
        *,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        shape = (max_slots, kv_heads, max_len, head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.max_slots = max_slots
        self.max_len = max_len
        self._free = set(range(max_slots))

    # -- slots -------------------------------------------------------------------------------

    @property
    def free_slots(self) -> int:
        return len(self._free)

    def allocate(self, avoid: Collection[int] = ()) -> int | None:
        """The lowest free slot not in `avoid` (so busy slots stay packed at the front), or
        None when there is none."""
        candidates = self._free.difference(avoid)
        if not candidates:
            return None
        slot = min(candidates)
        self._free.remove(slot)
        return slot

    def take(self, slot: int) -> None:
        """Allocate this particular free slot."""
        if slot not in self._free:
            raise ValueError(f"slot {slot} is not free")
        self._free.remove(slot)

    def release(self, slot: int) -> None:
        if not 0 <= slot < self.max_slots:
            raise ValueError(f"no slot {slot}: there are {self.max_slots}")
        if slot in self._free:
            raise ValueError(f"slot {slot} is already free")
        self._free.add(slot)

    # -- keys and values ---------------------------------------------------------------------

    def write(
        self,
        layer: int,
        slots: torch.Tensor,
        positions: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
    ) -> None:
        """Store new keys/values [batch, kv_heads, T, head_dim] of `slots` [batch] at
        `positions` [batch, T], in place."""
        rows = slots[:, None]
        # Two advanced indices around a slice put the indexed dims first: [batch, T, kv_heads, d].
        self.keys[layer][rows, :, positions] = keys.transpose(1, 2)
        self.values[layer][rows, :, positions] = values.transpose(1, 2)

    def read(
        self, layer: int, slots: list[int], slot_index: torch.Tensor, length: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values [batch, kv_heads, length, head_dim] of `slots` (`slot_index` is the
        same as a tensor): a view when the slots are consecutive (the usual case, as the lowest
        free slot is taken first), a gathered copy otherwise."""
        first = slots[0]
        index: slice | torch.Tensor = slot_index
        if slots == list(range(first, first + len(slots))):
            index = slice(first, first + len(slots))
        return self.keys[layer][index, :, :length], self.values[layer][index, :, :length]

    def copy_prefix(self, source: int, target: int, length: int) -> None:
        """Copy positions [0, length) of slot `source` into slot `target` (a fork)."""
        for keys, values in zip(self.keys, self.values, strict=True):
            keys[target, :, :length] = keys[source, :, :length]
            values[target, :, :length] = values[source, :, :length]
