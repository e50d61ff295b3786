"""A checkpoint's `config.json`, parsed: `StepAudio2Config` (audio encoder sizes, Qwen2 config).

The layout is StepFun's (Step-Audio-2-mini, Step-Audio-R1, R1.1):

    {"architectures": ["StepAudio2ForCausalLM"], "model_type": "step_audio_2",
     "audio_encoder_config": {"n_mels", "n_audio_ctx", "n_audio_state", "n_audio_head",
                              "n_audio_layer", "llm_dim", "kernel_size", "adapter_stride", ...},
     "text_config": {"hidden_size", "intermediate_size", "num_hidden_layers", ...}}

`text_config` is a plain dict of Qwen2 fields (StepFun also writes `num_attention_groups` and
`max_seq_len`, which Qwen2 ignores). Some re-exports put the text fields at the top level instead
of under `text_config`; both are read. Every problem with a checkpoint raises `CheckpointError`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from transformers import Qwen2Config

ARCHITECTURE = "StepAudio2ForCausalLM"
MODEL_TYPE = "step_audio_2"
CONFIG_FILE = "config.json"

# Qwen2 fields that StepFun's text_config may carry at the top level of config.json.
_FLAT_TEXT_FIELDS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "num_attention_groups",
    "hidden_act",
    "max_position_embeddings",
    "rms_norm_eps",
    "rope_theta",
    "rope_scaling",
    "eos_token_id",
    "pad_token_id",
)


class CheckpointError(Exception):
    """A checkpoint directory that cannot be loaded; the message names the file, key or shape."""


@dataclass(frozen=True)
class AudioEncoderConfig:
    """Sizes of the Whisper-style audio encoder and the adaptor (`audio_encoder_config`)."""

    n_mels: int
    n_audio_ctx: int
    n_audio_state: int
    n_audio_head: int
    n_audio_layer: int
    llm_dim: int
    kernel_size: int = 3
    adapter_stride: int = 2

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> AudioEncoderConfig:
        required = (
            "n_mels",
            "n_audio_ctx",
            "n_audio_state",
            "n_audio_head",
            "n_audio_layer",
            "llm_dim",
        )
        missing = [name for name in required if name not in raw]
        if missing:
            raise CheckpointError(f"audio_encoder_config lacks {missing}")
        optional = {k: int(raw[k]) for k in ("kernel_size", "adapter_stride") if k in raw}
        config = cls(**{k: int(raw[k]) for k in required}, **optional)
        if config.n_audio_state % config.n_audio_head:
            raise CheckpointError(
                f"audio_encoder_config: n_audio_state {config.n_audio_state} is not divisible by "
                f"n_audio_head {config.n_audio_head}"
            )
        return config


@dataclass(frozen=True)
class StepAudio2Config:
    """The parsed config: `audio` sizes, `text` (a `transformers.Qwen2Config`), and `raw` JSON."""

    audio: AudioEncoderConfig
    text: Qwen2Config
    raw: dict[str, Any]

    @property
    def max_history_turns(self) -> int | None:
        """Our extension key `max_history_turns`: the most earlier user turns the model was
        trained to hold in its context (the embedded model states it); None where the checkpoint
        does not say (StepFun's), and only its context length limits the history."""
        value = self.raw.get("max_history_turns")
        return None if value is None else int(value)

    @property
    def context_tokens(self) -> int:
        """The longest context the decoder was built for (`max_position_embeddings`)."""
        return int(self.text.max_position_embeddings)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> StepAudio2Config:
        architectures = raw.get("architectures") or []
        if ARCHITECTURE not in architectures:
            raise CheckpointError(
                f"config.json architectures is {architectures}, expected [{ARCHITECTURE!r}]: "
                "this is not a Step-Audio 2 / Step-Audio-R1 checkpoint"
            )
        if "audio_encoder_config" not in raw:
            raise CheckpointError("config.json has no audio_encoder_config")
        audio = AudioEncoderConfig.from_dict(raw["audio_encoder_config"])
        text = _qwen2_config(raw)
        if audio.llm_dim != text.hidden_size:
            raise CheckpointError(
                f"audio_encoder_config.llm_dim {audio.llm_dim} != text hidden_size "
                f"{text.hidden_size}: the adaptor output must match the decoder width"
            )
        return cls(audio=audio, text=text, raw=raw)

    @classmethod
    def from_file(cls, path: str | Path) -> StepAudio2Config:
        """Read `config.json` from a checkpoint directory (or the file itself)."""
        path = Path(path)
        file = path / CONFIG_FILE if path.is_dir() else path
        if not file.is_file():
            raise CheckpointError(f"{file} not found: a checkpoint needs a {CONFIG_FILE}")
        try:
            raw = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise CheckpointError(f"{file} is not valid JSON: {error}") from error
        return cls.from_dict(raw)

    @staticmethod
    def make_raw(audio: AudioEncoderConfig, text: dict[str, Any]) -> dict[str, Any]:
        """A config.json dict in StepFun's layout, as `write_checkpoint` writes it."""
        return {
            "architectures": [ARCHITECTURE],
            "auto_map": {
                "AutoConfig": "configuration_step_audio_2.StepAudio2Config",
                "AutoModelForCausalLM": "modeling_step_audio_2.StepAudio2ForCausalLM",
            },
            "model_type": MODEL_TYPE,
            "torch_dtype": "bfloat16",
            "text_config": text,
            "audio_encoder_config": {
                **asdict(audio),
                "model_type": "step_audio_2_encoder",
                "n_codebook_size": 4096,
            },
        }


def _qwen2_config(raw: dict[str, Any]) -> Qwen2Config:
    text = raw.get("text_config")
    if text is None:  # flat layout: text fields at the top level
        text = {k: raw[k] for k in _FLAT_TEXT_FIELDS if k in raw}
    if not isinstance(text, dict) or "hidden_size" not in text:
        raise CheckpointError("config.json has no text_config with a hidden_size")
    fields = {k: v for k, v in text.items() if k not in ("model_type", "architectures")}
    # StepFun's name for the KV head count; Qwen2 only knows num_key_value_heads.
    if "num_key_value_heads" not in fields and "num_attention_groups" in fields:
        fields["num_key_value_heads"] = fields["num_attention_groups"]
    fields.setdefault("hidden_act", "silu")
    fields.setdefault("tie_word_embeddings", False)
    fields.setdefault("use_sliding_window", False)
    try:
        config = Qwen2Config(**fields)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"text_config is not a valid Qwen2 config: {error}") from error
    if config.hidden_size % config.num_attention_heads:
        raise CheckpointError(
            f"text_config: hidden_size {config.hidden_size} is not divisible by "
            f"num_attention_heads {config.num_attention_heads}"
        )
    return config
