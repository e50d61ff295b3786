"""The user's audio as the model hears it: encoded by the audio side's encoder and adaptor, in
<= 25 s chunks, each cached per conversation item, chunk and length, so that a long
conversation does not re-encode its history at every turn."""

from __future__ import annotations

import asyncio
import collections

import numpy as np
import torch

from streaming.model.frontend import split_chunks
from streaming.model.modeling import StepAudio2ForCausalLM
from streaming.responder import Turn

# Encoded chunks kept; the least recently used go first.
AUDIO_CACHE_CHUNKS = 256


class AudioCache:
    def __init__(self, model: StepAudio2ForCausalLM, capacity: int = AUDIO_CACHE_CHUNKS) -> None:
        self.model = model
        self.capacity = capacity
        self._chunks: collections.OrderedDict[str, torch.Tensor] = collections.OrderedDict()
        self.encoded_chunks = 0  # chunks run through the encoder (for tests and metrics)

    async def encode(self, turn: Turn) -> list[torch.Tensor]:
        """The turn's audio, chunk by chunk."""
        assert turn.audio is not None
        chunks = split_chunks(np.asarray(turn.audio, dtype=np.float32))
        return [
            await self.encode_chunk(turn.item_id, index, chunk)
            for index, chunk in enumerate(chunks)
        ]

    async def encode_chunk(
        self, item_id: str | None, index: int, chunk: torch.Tensor
    ) -> torch.Tensor:
        """One <= 25 s chunk's embeddings, cached per conversation item, chunk and length (a
        speculative start or listening ahead sees a turn before it has all its audio)."""
        key = None if item_id is None else f"{item_id}:{index}:{len(chunk)}"
        if key is not None and key in self._chunks:
            self._chunks.move_to_end(key)
            return self._chunks[key]
        # Encoding is model work: run it off the event loop.
        [embeds] = await asyncio.to_thread(self.model.encode_audio, chunk)
        self.encoded_chunks += 1
        if key is not None:
            self._chunks[key] = embeds
            while len(self._chunks) > self.capacity:
                self._chunks.popitem(last=False)
        return embeds
