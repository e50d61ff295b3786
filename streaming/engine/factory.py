"""Every engine a server runs is built here, by name (`ENGINES`: torch, vllm, remote), with what
the server keeps of the checkpoint beside it (`AudioSide`).

The torch engine decodes with the checkpoint's decoder in this process, so the whole checkpoint
is loaded here and the engine and the audio side share it. vLLM (in this process or on a server
elsewhere) reads the decoder from the same directory itself: only the audio encoder and adaptor
are loaded here (`load_audio_side`), since a second copy of a 33B decoder would double the
server's memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from transformers import PreTrainedTokenizerBase

from streaming.engine.base import Engine
from streaming.model.checkpoint import LoadedModel, load_checkpoint, load_weights
from streaming.model.config import CheckpointError, StepAudio2Config
from streaming.model.modeling import StepAudio2ForCausalLM
from streaming.model.tokens import SpecialTokens, load_tokenizer

if TYPE_CHECKING:
    from streaming.engine.remote_engine import RemoteOptions
    from streaming.engine.vllm_engine import VllmOptions

# What the server keeps of a checkpoint when vLLM holds the decoder.
AUDIO_SIDE_PREFIXES = ("encoder.", "adapter.")


@dataclass(frozen=True)
class EngineSpec:
    """What an engine is built from: the checkpoint directory, the device and dtype of the
    model work in this process, the sequences and context asked for, and the options of the
    vLLM engines (their limits default to these)."""

    path: Path
    device: torch.device
    dtype: torch.dtype
    max_sequences: int
    max_seq_len: int
    vllm_options: VllmOptions | None = None
    remote_options: RemoteOptions | None = None


@dataclass(frozen=True)
class AudioSide:
    """What the server keeps of a checkpoint beside its engine: `model` encodes the user's audio
    (the whole model where the engine decodes with it), the tokenizer and its special ids build
    prompts and read replies, and the config holds the model's limits."""

    model: StepAudio2ForCausalLM
    tokenizer: PreTrainedTokenizerBase
    special: SpecialTokens
    config: StepAudio2Config

    @classmethod
    def of(cls, loaded: LoadedModel) -> AudioSide:
        return cls(loaded.model, loaded.tokenizer, loaded.special, loaded.config)


class AudioOnlyModel(StepAudio2ForCausalLM):
    """A checkpoint's model of which only the audio encoder and adaptor were read: the decoder
    and the LM head stay on the meta device (no memory). It runs where its adaptor is."""

    @property
    def device(self) -> torch.device:
        return self.adapter.linear2.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.adapter.linear2.weight.dtype


def load_audio_side(
    path: str | Path, dtype: torch.dtype = torch.bfloat16, device: torch.device | str = "cpu"
) -> AudioSide:
    """The audio side of a checkpoint without its decoder: the names and shapes of every tensor
    are checked as `load_checkpoint` checks them, but only the encoder's and adaptor's are read."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint directory {path} does not exist")
    config = StepAudio2Config.from_file(path)
    tokenizer = load_tokenizer(path)
    with torch.device("meta"):
        model = AudioOnlyModel(config)
    load_weights(model, path, dtype, torch.device(device), only=AUDIO_SIDE_PREFIXES)
    model.eval().requires_grad_(False)
    special = SpecialTokens.from_checkpoint(path, tokenizer)
    return AudioSide(model, tokenizer, special, config)


def build_torch(spec: EngineSpec) -> tuple[Engine, AudioSide]:
    """Our decoding loop over the checkpoint's decoder, loaded here."""
    from streaming.engine.torch_engine import TorchEngine

    loaded = load_checkpoint(spec.path, dtype=spec.dtype, device=spec.device)
    engine = TorchEngine(
        loaded.model.model,
        loaded.model.lm_head,
        max_slots=spec.max_sequences,
        max_seq_len=spec.max_seq_len,
    )
    return engine, AudioSide.of(loaded)


def build_vllm(spec: EngineSpec) -> tuple[Engine, AudioSide]:
    """The decoder on vLLM in this process; its options' max_sequences, max_model_len and dtype
    "auto" default to the spec's."""
    from streaming.engine.vllm_engine import VllmEngine, VllmOptions

    options = spec.vllm_options or VllmOptions(max_sequences=spec.max_sequences)
    if options.max_model_len is None:
        options = replace(options, max_model_len=spec.max_seq_len)
    if options.dtype == "auto":  # as the torch engine would run: fp32 on CPU, bf16 on CUDA
        options = replace(options, dtype=str(spec.dtype).removeprefix("torch."))
    engine = VllmEngine(spec.path, options)  # refuses what vLLM cannot serve before any loading
    return engine, load_audio_side(spec.path, dtype=spec.dtype, device=spec.device)


def build_remote(spec: EngineSpec) -> tuple[Engine, AudioSide]:
    """The decoder on a vLLM server elsewhere (the options' url is required; max_context
    defaults to the spec's); an unreachable server is an EngineError now, before any loading,
    not at the first request."""
    from streaming.engine.remote_engine import RemoteEngine, probe

    options = spec.remote_options
    if options is None:
        raise ValueError("the remote engine needs the vLLM server's url (--engine-url)")
    if options.max_context is None:
        options = replace(options, max_context=spec.max_seq_len)
    probe(options.url, options.connect_timeout_s, options.api_key)
    audio = load_audio_side(spec.path, dtype=spec.dtype, device=spec.device)
    return RemoteEngine(spec.path, options), audio


Builder = Callable[[EngineSpec], tuple[Engine, AudioSide]]
ENGINES: dict[str, Builder] = {"torch": build_torch, "vllm": build_vllm, "remote": build_remote}


def engine_builder(name: str) -> Builder:
    """The builder of the engine named `name`; ValueError naming the valid ones."""
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; valid: {', '.join(ENGINES)}")
    return ENGINES[name]
