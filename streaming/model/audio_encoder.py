"""The audio encoder (Whisper / Qwen2-Audio style, 25 Hz) and the adaptor (12.5 Hz) into the LLM.

Attribute names are the checkpoint keys, so `AudioEncoder.state_dict()` is what sits under
`encoder.` and `Adaptor.state_dict()` what sits under `adapter.`:

    encoder.conv1, encoder.conv2, encoder.positional_embedding.weight,
    encoder.blocks.N.{attn_ln, attn.query, attn.key (no bias), attn.value, attn.out,
                      mlp_ln, mlp.0, mlp.2}, encoder.after_norm
    adapter.conv, adapter.linear1, adapter.linear2

Lengths follow StepFun's code exactly: a clip of `mel_len` log-mel frames counts as
`mel_len - 2` valid frames (the end padding), attention ignores the frames past that, and the
model keeps `audio_token_count(mel_len)` adaptor outputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from streaming.model.config import AudioEncoderConfig

ADAPTER_HIDDEN = 2048  # fixed in StepFun's Adaptor, not in the config
MEL_END_FRAMES = 2  # frames of every clip's log-mel that StepFun does not count as audio
MASK_VALUE = -1e10  # additive attention bias for padded keys (finite: no NaN on empty clips)


def audio_token_count(mel_len: int) -> int:
    """Audio embeddings (`<audio_patch>` tokens) for a clip of `mel_len` log-mel frames.

    `mel_len` is the frame count `log_mel` returns (StepFun's `compute_token_num(mel.shape[1])`).
    With `valid = mel_len - 2`, the count is `((valid + 1) // 2 // 2 + 2 - 3) // 2 + 1`
    (docs/ARCHITECTURE.md, "Model facts"):
    conv2 and the average pool halve twice, then the adaptor conv (k3, stride 2, pad 1).
    """
    valid = mel_len - MEL_END_FRAMES
    encoder_len = encoder_output_lengths(torch.tensor([valid]))[0]
    return int(adaptor_output_lengths(encoder_len.unsqueeze(0))[0])


def encoder_output_lengths(valid_mel_lens: torch.Tensor) -> torch.Tensor:
    """Valid 25 Hz encoder frames for `valid_mel_lens` valid 100 Hz mel frames."""
    return (valid_mel_lens + 1) // 2 // 2


def adaptor_output_lengths(
    encoder_lens: torch.Tensor, kernel_size: int = 3, stride: int = 2
) -> torch.Tensor:
    """Valid 12.5 Hz adaptor outputs for `encoder_lens` valid encoder frames (conv padding 1)."""
    return (encoder_lens + 2 * 1 - kernel_size) // stride + 1


class MultiHeadAttention(nn.Module):
    """Bidirectional self-attention; `key` has no bias (Whisper)."""

    def __init__(self, n_state: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.query = nn.Linear(n_state, n_state)
        self.key = nn.Linear(n_state, n_state, bias=False)
        self.value = nn.Linear(n_state, n_state)
        self.out = nn.Linear(n_state, n_state)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """x: [batch, time, n_state]; bias: [batch, 1, 1, time] additive, or None."""
        batch, time, _ = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, time, self.n_head, -1).transpose(1, 2)

        attended = F.scaled_dot_product_attention(
            heads(self.query(x)), heads(self.key(x)), heads(self.value(x)), attn_mask=bias
        )
        return self.out(attended.transpose(1, 2).reshape(batch, time, -1))


class ResidualAttentionBlock(nn.Module):
    """Pre-norm transformer block: attention then a GELU MLP of width 4 * n_state."""

    def __init__(self, n_state: int, n_head: int) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(n_state, n_head)
        self.attn_ln = nn.LayerNorm(n_state)
        self.mlp = nn.Sequential(
            nn.Linear(n_state, 4 * n_state), nn.GELU(), nn.Linear(4 * n_state, n_state)
        )
        self.mlp_ln = nn.LayerNorm(n_state)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn(self.attn_ln(x), bias)
        return x + self.mlp(self.mlp_ln(x))


class AudioEncoder(nn.Module):
    """Log-mel [batch, n_mels, T] (100 Hz) -> hidden states [batch, ceil(T/2)//2, n_state] (25 Hz).

    conv1 (k3, p1) + GELU, conv2 (k3, stride 2, p1) + GELU (50 Hz), learned positional embedding
    [n_audio_ctx, n_state], `n_audio_layer` blocks, AvgPool1d(2, 2) (25 Hz), `after_norm`.
    """

    def __init__(self, config: AudioEncoderConfig) -> None:
        super().__init__()
        n_state = config.n_audio_state
        self.conv1 = nn.Conv1d(config.n_mels, n_state, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(n_state, n_state, kernel_size=3, stride=2, padding=1)
        self.positional_embedding = nn.Embedding(config.n_audio_ctx, n_state)
        self.blocks = nn.ModuleList(
            ResidualAttentionBlock(n_state, config.n_audio_head)
            for _ in range(config.n_audio_layer)
        )
        self.avg_pooler = nn.AvgPool1d(2, stride=2)
        self.after_norm = nn.LayerNorm(n_state)

    def forward(
        self, mels: torch.Tensor, valid_mel_lens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """mels: [batch, n_mels, T]; valid_mel_lens: [batch] (frames minus 2, StepFun's wav_lens).

        Returns ([batch, ceil(T/2)//2, n_state], valid encoder lengths [batch]).
        """
        total = mels.shape[-1]
        x = F.gelu(self.conv1(mels))
        x = F.gelu(self.conv2(x)).transpose(1, 2)  # [batch, ceil(T/2), n_state]
        if x.shape[1] > self.positional_embedding.num_embeddings:
            raise ValueError(
                f"{total} mel frames need {x.shape[1]} positions but the encoder has "
                f"{self.positional_embedding.num_embeddings}: split audio into shorter chunks"
            )
        x = x + self.positional_embedding.weight[: x.shape[1]]
        bias = self._padding_bias(valid_mel_lens, total, x.dtype)
        for block in self.blocks:
            x = block(x, bias)
        x = self.avg_pooler(x.transpose(1, 2)).transpose(1, 2)
        return self.after_norm(x), encoder_output_lengths(valid_mel_lens)

    @staticmethod
    def _padding_bias(valid_mel_lens: torch.Tensor, total: int, dtype: torch.dtype) -> torch.Tensor:
        """[batch, 1, 1, ceil(T/2)] bias that hides conv2 outputs past each clip's valid frames.

        StepFun samples the 100 Hz validity mask at frames (T + 1) % 2, +2, ... for the 50 Hz grid.
        """
        frames = torch.arange(total, device=valid_mel_lens.device)
        valid = frames.unsqueeze(0) < valid_mel_lens.unsqueeze(1)  # [batch, T]
        valid = valid[:, (total + 1) % 2 :: 2]
        bias = torch.zeros(valid.shape, dtype=dtype, device=valid.device)
        bias.masked_fill_(~valid, MASK_VALUE)
        return bias[:, None, None, :]


class Adaptor(nn.Module):
    """Encoder states [batch, T, n_state] (25 Hz) -> LLM embeddings [batch, T', llm_dim] (12.5 Hz).

    conv (k3, stride 2, p1) + GELU, linear1 (n_state -> 2048), ReLU, linear2 (2048 -> llm_dim).
    """

    def __init__(self, config: AudioEncoderConfig) -> None:
        super().__init__()
        n_state = config.n_audio_state
        self.kernel_size = config.kernel_size
        self.stride = config.adapter_stride
        self.conv = nn.Conv1d(
            n_state, n_state, config.kernel_size, config.adapter_stride, padding=1
        )
        self.linear1 = nn.Linear(n_state, ADAPTER_HIDDEN)
        self.relu = nn.ReLU()
        self.linear2 = nn.Linear(ADAPTER_HIDDEN, config.llm_dim)

    def forward(
        self, x: torch.Tensor, encoder_lens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ([batch, T', llm_dim], valid output lengths [batch])."""
        x = F.gelu(self.conv(x.transpose(1, 2))).transpose(1, 2)
        x = self.linear2(self.relu(self.linear1(x)))
        return x, adaptor_output_lengths(encoder_lens, self.kernel_size, self.stride)
