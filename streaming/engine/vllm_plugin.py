"""The vLLM plugin of this project: it teaches vLLM to serve a Step-Audio 2 / R1 checkpoint.

vLLM calls `register()` in every process it starts (the `vllm.general_plugins` entry point in
`pyproject.toml`), before it reads a model's config. It registers two things, nothing else:

- `StepAudio2TextConfig` for the checkpoint's `model_type` `step_audio_2`, so that transformers
  reads StepFun's `config.json` (the Qwen2 decoder's fields under `text_config`) without the
  remote code its `auto_map` names;
- the architecture `StepAudio2ForCausalLM` as `streaming.engine.vllm_model:StepAudio2ForVllm`,
  imported lazily by vLLM (by name), so that loading the plugin imports no vLLM model code.

This module imports transformers only: it is safe to import where vLLM is not installed.
"""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig, Qwen2Config

from streaming.model.audio_encoder import audio_token_count
from streaming.model.config import ARCHITECTURE, MODEL_TYPE, StepAudio2Config
from streaming.model.frontend import CHUNK_SAMPLES, mel_frame_count

VLLM_MODEL_CLASS = "streaming.engine.vllm_model:StepAudio2ForVllm"
# The most audio rows one vLLM item (one <= 25 s chunk) has: the encoder budget vLLM reserves.
MAX_ROWS_PER_ITEM = audio_token_count(mel_frame_count(CHUNK_SAMPLES))


class StepAudio2TextConfig(PretrainedConfig):
    """StepFun's `config.json` as transformers sees it in vLLM: the decoder's `Qwen2Config` as
    `text_config` (vLLM reads the decoder's sizes from it), and the audio encoder's sizes kept
    as a plain dict (vLLM never runs the encoder: the server does).

    The text fields are parsed by `StepAudio2Config`, the same code the torch engine's loader
    uses, so both engines read one checkpoint the same way, with the same errors.
    """

    model_type = MODEL_TYPE
    sub_configs = {"text_config": Qwen2Config}

    def __init__(
        self,
        text_config: dict[str, Any] | Qwen2Config | None = None,
        audio_encoder_config: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(text_config, Qwen2Config):
            text_config = text_config.to_dict()
        raw = dict(kwargs, audio_encoder_config=audio_encoder_config, text_config=text_config)
        raw.setdefault("architectures", [ARCHITECTURE])
        parsed = StepAudio2Config.from_dict(raw) if audio_encoder_config is not None else None
        self.text_config = parsed.text if parsed is not None else Qwen2Config()
        self.audio_encoder_config = audio_encoder_config
        super().__init__(**kwargs)

    def get_text_config(self, *args: Any, **kwargs: Any) -> Qwen2Config:
        return self.text_config


def register() -> None:
    """The entry point vLLM calls in each of its processes; safe to call more than once."""
    from transformers import AutoConfig
    from vllm import ModelRegistry

    AutoConfig.register(MODEL_TYPE, StepAudio2TextConfig, exist_ok=True)
    if ARCHITECTURE not in ModelRegistry.get_supported_archs():
        ModelRegistry.register_model(ARCHITECTURE, VLLM_MODEL_CLASS)
