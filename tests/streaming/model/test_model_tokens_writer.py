"""The written checkpoint's files, its tokenizer, and SpecialTokens read from them."""

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from streaming.model.config import CheckpointError, StepAudio2Config
from streaming.model.sizes import BENCH50M, TINY
from streaming.model.tokens import SpecialTokens, load_tokenizer
from streaming.model.writer import parameter_count, write_checkpoint

REAL_FILES = {
    "config.json",
    "generation_config.json",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
}


def test_files_like_a_real_checkpoint(tiny_checkpoint: Path):
    names = {p.name for p in tiny_checkpoint.iterdir()}
    assert REAL_FILES <= names
    assert any(n.startswith("model-00001-of-") and n.endswith(".safetensors") for n in names)
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert config["architectures"] == ["StepAudio2ForCausalLM"]
    assert config["model_type"] == "step_audio_2"
    assert set(config["audio_encoder_config"]) >= {
        "n_mels",
        "n_audio_ctx",
        "n_audio_state",
        "n_audio_head",
        "n_audio_layer",
        "kernel_size",
        "adapter_stride",
        "llm_dim",
    }
    tokenizer_config = json.loads((tiny_checkpoint / "tokenizer_config.json").read_text())
    assert tokenizer_config["tokenizer_class"] == "Qwen2Tokenizer"
    contents = {t["content"] for t in tokenizer_config["added_tokens_decoder"].values()}
    assert {"<|BOT|>", "<|EOT|>", "<audio_patch>", "<think>", "</think>"} <= contents


def test_config_parses(tiny_checkpoint: Path):
    config = StepAudio2Config.from_file(tiny_checkpoint)
    assert config.text.hidden_size == config.audio.llm_dim == TINY.hidden_size
    assert config.text.num_key_value_heads == TINY.num_key_value_heads
    assert config.text.tie_word_embeddings is False
    assert config.audio.n_audio_ctx == 1500 and config.audio.n_mels == 128


def test_special_tokens_read_from_tokenizer(tiny_checkpoint: Path):
    tokenizer = load_tokenizer(tiny_checkpoint)
    special = SpecialTokens.from_checkpoint(tiny_checkpoint, tokenizer)
    by_name = {
        "bot": "<|BOT|>",
        "eot": "<|EOT|>",
        "audio_start": "<audio_start>",
        "audio_patch": "<audio_patch>",
        "audio_end": "<audio_end>",
        "think": "<think>",
        "think_end": "</think>",
        "eos": "<|endoftext|>",
        "tts_start": "<tts_start>",
    }
    for field, token in by_name.items():
        assert getattr(special, field) == tokenizer.convert_tokens_to_ids(token)
        assert tokenizer.decode([getattr(special, field)]) == token
    ids = [getattr(special, f) for f in by_name]
    assert len(set(ids)) == len(ids)
    assert special.stop_ids == (special.eos, special.eot)


def test_text_round_trip_with_single_digits(tiny_checkpoint: Path):
    tokenizer = load_tokenizer(tiny_checkpoint)
    text = "What is 1234 plus 56? Seven times six is forty two, and the quick fox jumps."
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text
    assert len(ids) < len(text) / 2  # a trained BPE, not bytes
    digit_tokens = tokenizer.convert_ids_to_tokens(
        tokenizer.encode("1234", add_special_tokens=False)
    )
    assert digit_tokens == ["1", "2", "3", "4"]  # Qwen2 splits numbers into single digits


def test_same_seed_same_bytes(tmp_path: Path):
    a = write_checkpoint(tmp_path / "a", TINY, seed=3)
    b = write_checkpoint(tmp_path / "b", TINY, seed=3)
    c = write_checkpoint(tmp_path / "c", TINY, seed=4)
    shard = "model-00001-of-00001.safetensors"
    assert (a / shard).read_bytes() == (b / shard).read_bytes()
    assert (a / shard).read_bytes() != (c / shard).read_bytes()
    assert (a / "tokenizer.json").read_bytes() == (c / "tokenizer.json").read_bytes()


def test_bench50m_is_about_50m_parameters():
    assert 45e6 < parameter_count(BENCH50M) < 55e6
    assert parameter_count("tiny") < 1e6


def test_tokenizer_without_step_tokens_is_refused():
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel()
    bpe.add_special_tokens(["<|endoftext|>", "<|BOT|>", "<|EOT|>"])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>")
    with pytest.raises(CheckpointError, match="<audio_start>.*<audio_end>"):
        SpecialTokens.from_tokenizer(tokenizer)


def test_real_step_audio_r1_sizes_on_meta():
    """StepFun's published R1 config builds a 33B model with the shapes in docs/ARCHITECTURE.md
    (no memory used)."""
    import torch

    from streaming.model.modeling import StepAudio2ForCausalLM

    raw = {
        "architectures": ["StepAudio2ForCausalLM"],
        "model_type": "step_audio_2",
        "audio_encoder_config": {
            "n_mels": 128,
            "n_audio_ctx": 1500,
            "n_audio_state": 1280,
            "n_audio_head": 20,
            "n_audio_layer": 32,
            "llm_dim": 5120,
            "kernel_size": 3,
            "adapter_stride": 2,
        },
        "text_config": {
            "hidden_size": 5120,
            "intermediate_size": 27648,
            "num_hidden_layers": 64,
            "num_attention_heads": 40,
            "num_attention_groups": 8,
            "vocab_size": 158720,
            "rms_norm_eps": 1e-5,
            "rope_theta": 1e6,
            "max_position_embeddings": 65536,
        },
    }
    with torch.device("meta"):
        model = StepAudio2ForCausalLM(StepAudio2Config.from_dict(raw))
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["encoder.positional_embedding.weight"] == (1500, 1280)
    assert shapes["encoder.blocks.31.mlp.0.weight"] == (5120, 1280)
    assert shapes["adapter.linear1.weight"] == (2048, 1280)
    assert shapes["adapter.linear2.weight"] == (5120, 2048)
    assert shapes["model.layers.63.self_attn.k_proj.weight"] == (1024, 5120)  # 8 KV heads
    assert shapes["lm_head.weight"] == (158720, 5120)
    assert 32e9 < sum(p.numel() for p in model.parameters()) < 34e9
