"""`StepAudio2ForCausalLM`: audio encoder + adaptor + Qwen2 decoder + untied LM head.

The module tree is the checkpoint: `state_dict()` keys are exactly those of StepFun's
safetensors (`encoder.*`, `adapter.*`, `model.*`, `lm_head.weight`). This module holds no
decoding loop: engines drive `model` (a `transformers.Qwen2Model`) and `lm_head` themselves.
`encode_audio` turns a 16 kHz waveform into one embedding matrix per <= 25 s chunk.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from transformers import Qwen2Model
from transformers.models.qwen2.modeling_qwen2 import Qwen2RotaryEmbedding

from streaming.model.audio_encoder import MEL_END_FRAMES, Adaptor, AudioEncoder
from streaming.model.config import StepAudio2Config
from streaming.model.frontend import log_mel, split_chunks

# Fewer frames leave the average pool nothing to pool; the padding is masked and not counted.
MIN_BATCH_FRAMES = 4


class StepAudio2ForCausalLM(nn.Module):
    """Step-Audio 2 / Step-Audio-R1. Attributes `encoder`, `adapter`, `model`, `lm_head`."""

    def __init__(self, config: StepAudio2Config) -> None:
        super().__init__()
        self.config = config
        self.encoder = AudioEncoder(config.audio)
        self.adapter = Adaptor(config.audio)
        self.model = Qwen2Model(config.text)
        self.lm_head = nn.Linear(config.text.hidden_size, config.text.vocab_size, bias=False)

    @property
    def embed_tokens(self) -> nn.Embedding:
        return self.model.embed_tokens

    @property
    def device(self) -> torch.device:
        return self.lm_head.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.lm_head.weight.dtype

    def reset_rotary(self) -> None:
        """Rebuild the rotary embedding's buffers (not in checkpoints) on the model's device."""
        with torch.device(self.device):
            self.model.rotary_emb = Qwen2RotaryEmbedding(self.config.text)

    @torch.inference_mode()
    def encode_audio(self, wave_16k: torch.Tensor | np.ndarray) -> list[torch.Tensor]:
        """16 kHz mono waveform -> one [n_tokens, hidden] tensor (model dtype) per <= 25 s chunk.

        n_tokens of each chunk is `audio_token_count(mel frames)`: one row per `<audio_patch>`.
        """
        mels = [
            log_mel(chunk, self.config.audio.n_mels, self.device)
            for chunk in split_chunks(wave_16k)
        ]
        return self.encode_mels(mels)

    @torch.inference_mode()
    def encode_mels(self, mels: list[torch.Tensor]) -> list[torch.Tensor]:
        """Log-mels [n_mels, T_i] -> [n_tokens_i, hidden] each, batched as StepFun batches them
        (zero-padded to the longest, padded frames hidden from attention)."""
        if not mels:
            return []
        lengths = torch.tensor([m.shape[-1] for m in mels], device=self.device)
        frames = max(int(lengths.max()), MIN_BATCH_FRAMES)
        batch = torch.zeros(
            len(mels), mels[0].shape[0], frames, device=self.device, dtype=self.dtype
        )
        for row, mel in zip(batch, mels, strict=True):
            row[:, : mel.shape[-1]] = mel
        states, encoder_lens = self.encoder(batch, lengths - MEL_END_FRAMES)
        embeds, token_lens = self.adapter(states, encoder_lens)
        return [row[: int(n)] for row, n in zip(embeds, token_lens, strict=True)]

    def forward(self, inputs_embeds: torch.Tensor) -> torch.Tensor:
        """[batch, len, hidden] input embeddings -> [batch, len, vocab] logits (no cache).

        A plain reference forward for tests and scoring; engines run `model` with their caches.
        """
        hidden = self.model(inputs_embeds=inputs_embeds, use_cache=False).last_hidden_state
        return self.lm_head(hidden)
