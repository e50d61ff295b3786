"""Audio encoder and adaptor: checkpoint key names and output lengths for 0.1 s to 60 s."""

import numpy as np
import pytest
import torch

from streaming.model.audio_encoder import (
    MEL_END_FRAMES,
    Adaptor,
    AudioEncoder,
    audio_token_count,
)
from streaming.model.config import AudioEncoderConfig
from streaming.model.frontend import CHUNK_SAMPLES, log_mel, mel_frame_count, split_chunks

RATE = 16_000
TINY_AUDIO = AudioEncoderConfig(
    n_mels=128, n_audio_ctx=1500, n_audio_state=16, n_audio_head=2, n_audio_layer=1, llm_dim=8
)


@pytest.fixture(scope="module")
def encoder_and_adaptor() -> tuple[AudioEncoder, Adaptor]:
    torch.manual_seed(0)
    return AudioEncoder(TINY_AUDIO).eval(), Adaptor(TINY_AUDIO).eval()


def design_formula(mel_len: int) -> int:
    """StepFun's token count (docs/ARCHITECTURE.md, "Model facts"), applied to the valid frames
    (frames minus StepFun's 2 end frames)."""
    valid = mel_len - 2
    return ((valid + 1) // 2 // 2 + 2 - 3) // 2 + 1


def test_checkpoint_key_names():
    encoder_keys = set(AudioEncoder(TINY_AUDIO).state_dict())
    expected = {
        "conv1.weight",
        "conv1.bias",
        "conv2.weight",
        "conv2.bias",
        "positional_embedding.weight",
        "after_norm.weight",
        "after_norm.bias",
    }
    for name in ("attn_ln", "mlp_ln", "attn.query", "attn.value", "attn.out", "mlp.0", "mlp.2"):
        expected |= {f"blocks.0.{name}.weight", f"blocks.0.{name}.bias"}
    expected.add("blocks.0.attn.key.weight")  # Whisper's key projection has no bias
    assert encoder_keys == expected
    assert set(Adaptor(TINY_AUDIO).state_dict()) == {
        "conv.weight",
        "conv.bias",
        "linear1.weight",
        "linear1.bias",
        "linear2.weight",
        "linear2.bias",
    }


def test_shapes_follow_config():
    state = AudioEncoder(TINY_AUDIO).state_dict()
    assert state["conv1.weight"].shape == (16, 128, 3)
    assert state["positional_embedding.weight"].shape == (1500, 16)
    assert state["blocks.0.mlp.0.weight"].shape == (64, 16)
    adaptor = Adaptor(TINY_AUDIO).state_dict()
    assert adaptor["linear1.weight"].shape == (2048, 16)
    assert adaptor["linear2.weight"].shape == (8, 2048)


def kept_outputs(encoder: AudioEncoder, adaptor: Adaptor, mel_len: int) -> tuple[int, int]:
    """(rows the model keeps, rows the modules produce) for one clip of `mel_len` frames.

    Lengths depend only on the frame count, so a random log-mel of that many frames will do.
    """
    mel = torch.randn(1, 128, mel_len)
    with torch.inference_mode():
        states, encoder_lens = encoder(mel, torch.tensor([mel_len - 2]))
        embeds, lens = adaptor(states, encoder_lens)
    return int(lens[0]), embeds.shape[1]


def test_token_count_every_10ms_to_3s(encoder_and_adaptor):
    """All lengths in one zero-padded batch, as StepFun batches the chunks of a request."""
    encoder, adaptor = encoder_and_adaptor
    mel_lens = torch.tensor(
        [mel_frame_count(n) for n in range(RATE // 10, 3 * RATE + 1, RATE // 100)]
    )
    assert_batch_counts(encoder, adaptor, mel_lens)


def assert_batch_counts(encoder: AudioEncoder, adaptor: Adaptor, mel_lens: torch.Tensor) -> None:
    """Random mels of these lengths in one zero-padded batch: every clip keeps exactly the
    token count of the formula."""
    mels = torch.randn(len(mel_lens), 128, int(mel_lens.max()))
    with torch.inference_mode():
        states, encoder_lens = encoder(mels, mel_lens - MEL_END_FRAMES)
        _, lens = adaptor(states, encoder_lens)
    for mel_len, kept in zip(mel_lens.tolist(), lens.tolist(), strict=True):
        assert kept == audio_token_count(mel_len) == design_formula(mel_len)


def test_unpadded_output_rows(encoder_and_adaptor):
    """Alone, a clip's adaptor output has the kept rows plus at most one row that covers only
    StepFun's end padding (every frame-count residue mod 8 is covered)."""
    encoder, adaptor = encoder_and_adaptor
    for n_samples in range(RATE // 10, RATE // 10 + 17 * 160, 160):
        mel_len = mel_frame_count(n_samples)
        kept, produced = kept_outputs(encoder, adaptor, mel_len)
        assert kept == audio_token_count(mel_len)
        assert produced - kept in (0, 1)


def test_token_count_coarse_to_60s(encoder_and_adaptor):
    """Every chunk of every length, one padded batch (lengths above 25 s are split)."""
    encoder, adaptor = encoder_and_adaptor
    mel_lens = []
    for seconds in np.arange(3.0, 60.01, 1.37).tolist() + [25.0, 50.0, 60.0]:
        n_samples = int(seconds * RATE)
        chunks = split_chunks(torch.zeros(n_samples))
        assert all(len(c) <= CHUNK_SAMPLES for c in chunks)
        assert len(chunks) == -(-n_samples // CHUNK_SAMPLES)
        mel_lens += [mel_frame_count(len(c)) for c in chunks]
    mel_lens = torch.tensor(sorted(set(mel_lens)))
    assert_batch_counts(encoder, adaptor, mel_lens)


def test_log_mel_frames_feed_the_count(encoder_and_adaptor):
    """Real log-mel input, end to end through the modules, at a few lengths."""
    encoder, adaptor = encoder_and_adaptor
    wave = np.random.default_rng(0).uniform(-0.3, 0.3, 2 * RATE).astype(np.float32)
    for n_samples in (1600, 1760, 16_000, 16_160, 32_000):
        mel = log_mel(wave[:n_samples])
        with torch.inference_mode():
            states, encoder_lens = encoder(mel[None], torch.tensor([mel.shape[-1] - 2]))
            _, lens = adaptor(states, encoder_lens)
        assert int(lens[0]) == audio_token_count(mel.shape[-1])


def test_25s_chunk_fits_positions_and_30s_does_not(encoder_and_adaptor):
    encoder, _ = encoder_and_adaptor
    assert audio_token_count(mel_frame_count(CHUNK_SAMPLES)) == 313
    too_long = torch.zeros(128, mel_frame_count(31 * RATE))
    with pytest.raises(ValueError, match="positions"):
        encoder(too_long[None], torch.tensor([too_long.shape[-1] - 2]))


def test_padding_is_hidden_from_attention(encoder_and_adaptor):
    """Frames past a clip's valid length must not change its valid outputs."""
    encoder, _ = encoder_and_adaptor
    mel = log_mel(np.random.default_rng(2).uniform(-0.3, 0.3, RATE).astype(np.float32))
    padded = torch.cat([mel, torch.zeros(128, 40)], dim=1)
    noisy = torch.cat([mel, torch.randn(128, 40)], dim=1)
    valid = torch.tensor([mel.shape[-1] - 2])
    with torch.inference_mode():
        a, lens = encoder(padded[None], valid)
        b, _ = encoder(noisy[None], valid)
    n = int(lens[0]) - 1  # the last valid frame's conv window reaches into the padding
    torch.testing.assert_close(a[0, :n], b[0, :n])
