"""The embedded model: its construction (sizes: streaming/model/sizes.py), and writing it as a
real checkpoint.

The model is `StepAudio2ForCausalLM` itself (encoder, adaptor, Qwen2 decoder, untied head), built
from a config.json in StepFun's layout, so the file it is saved to loads through
`load_checkpoint` like a Step-Audio-R1 download.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from streaming.arith.examples import MAX_HISTORY_TURNS
from streaming.arith.tokenizer import write_tokenizer
from streaming.model.checkpoint import SINGLE_FILE
from streaming.model.config import StepAudio2Config
from streaming.model.modeling import StepAudio2ForCausalLM
from streaming.model.sizes import ARITH_PRESETS, ModelSizes
from streaming.model.tokens import EOT, GENERATION_CONFIG_FILE
from streaming.model.writer import ENDOFTEXT, audio_config, padded_vocab_size, text_config

# By `--size` name: "arith", the shipped model, or "tiny", its quick test (ARITH_TINY)
SIZES = ARITH_PRESETS


def model_config(sizes: ModelSizes, tokenizer: PreTrainedTokenizerBase) -> dict:
    """config.json's contents (StepFun's layout) for these sizes and this tokenizer, with our
    key `max_history_turns`: the server keeps at most that many earlier user turns."""
    vocab_size = padded_vocab_size(len(tokenizer))
    eos = token_id(tokenizer, ENDOFTEXT)
    raw = StepAudio2Config.make_raw(audio_config(sizes), text_config(sizes, vocab_size, eos))
    return {**raw, "max_history_turns": MAX_HISTORY_TURNS}


def token_id(tokenizer: PreTrainedTokenizerBase, token: str) -> int:
    """The id of one token of the vocabulary (an error for a token it lacks)."""
    found = tokenizer.get_vocab().get(token)
    if found is None:
        raise ValueError(f"the tokenizer has no token {token!r}")
    return int(found)


def build_model(raw_config: dict, seed: int) -> StepAudio2ForCausalLM:
    """A freshly initialised model. The encoder's learned positions start as Whisper's
    sinusoids (unit scale, like its conv features), not N(0, 1) noise that would drown them."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = StepAudio2ForCausalLM(StepAudio2Config.from_dict(raw_config))
    positions = model.encoder.positional_embedding.weight
    with torch.no_grad():
        positions.copy_(sinusoids(*positions.shape))
    return model


def sinusoids(length: int, channels: int, max_timescale: float = 10_000.0) -> torch.Tensor:
    """Whisper's positional encoding [length, channels]: sines, then cosines."""
    increment = math.log(max_timescale) / (channels // 2 - 1)
    inverse = torch.exp(-increment * torch.arange(channels // 2))
    scaled = torch.arange(length)[:, None] * inverse[None, :]
    return torch.cat([torch.sin(scaled), torch.cos(scaled)], dim=1)


def save_checkpoint(
    path: Path,
    model: StepAudio2ForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    dtype: torch.dtype = torch.bfloat16,
) -> Path:
    """config.json, model.safetensors, generation_config.json and tokenizer files in `path`.

    Written into a sibling directory first and swapped in, so a crash never leaves a half
    checkpoint where the loader looks.
    """
    staging = path.with_name(path.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    eos, eot = token_id(tokenizer, ENDOFTEXT), token_id(tokenizer, EOT)
    _write_json(staging / "config.json", model.config.raw)
    _write_json(
        staging / GENERATION_CONFIG_FILE,
        {"bos_token_id": eos, "eos_token_id": [eos, eot], "pad_token_id": eos},
    )
    write_tokenizer(tokenizer, staging)
    state = {name: p.detach().to(dtype).contiguous() for name, p in model.named_parameters()}
    save_file(state, str(staging / SINGLE_FILE), metadata={"format": "pt"})
    shutil.rmtree(path, ignore_errors=True)
    staging.rename(path)
    return path


def _write_json(file: Path, data: dict) -> None:
    file.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
