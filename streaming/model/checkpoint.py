"""Load a Step-Audio 2 / Step-Audio-R1 checkpoint directory: `load_checkpoint(path) -> LoadedModel`.

A checkpoint is what StepFun publishes on Hugging Face: `config.json`, safetensors weights
(`model.safetensors`, or shards named by `model.safetensors.index.json`), tokenizer files and
`generation_config.json`. The model is built on the meta device (no memory), every name and
shape is checked against the files before any data is read, then tensors are read one at a time,
converted to the target dtype and device and assigned in place: peak memory is the model plus
one tensor. Every problem raises `CheckpointError` naming the file, key and shapes.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn
from transformers import PreTrainedTokenizerBase

from streaming.model.config import CheckpointError, StepAudio2Config
from streaming.model.modeling import StepAudio2ForCausalLM
from streaming.model.tokens import SpecialTokens, load_tokenizer

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
MAX_NAMES_SHOWN = 10  # keys listed in a missing/unexpected error; the rest are counted


@dataclass
class LoadedModel:
    """What `load_checkpoint` returns."""

    model: StepAudio2ForCausalLM
    tokenizer: PreTrainedTokenizerBase
    special: SpecialTokens
    config: StepAudio2Config
    path: Path


def load_checkpoint(
    path: str | Path, dtype: torch.dtype = torch.bfloat16, device: torch.device | str = "cpu"
) -> LoadedModel:
    """Load model (eval mode, no grad), tokenizer and special token ids from a directory."""
    path = Path(path)
    if path.is_file():
        raise CheckpointError(
            f"{path} is a file; --model takes the checkpoint's directory (the one holding "
            "config.json, the tokenizer files and the *.safetensors shards)"
        )
    if not path.is_dir():
        raise CheckpointError(f"checkpoint directory {path} does not exist")
    config = StepAudio2Config.from_file(path)
    tokenizer = load_tokenizer(path)
    special = SpecialTokens.from_checkpoint(path, tokenizer)
    if len(tokenizer) > config.text.vocab_size:
        raise CheckpointError(
            f"the tokenizer has {len(tokenizer)} tokens but text_config.vocab_size is "
            f"{config.text.vocab_size}"
        )
    with torch.device("meta"):
        model = StepAudio2ForCausalLM(config)
    load_weights(model, path, dtype=dtype, device=torch.device(device))
    model.reset_rotary()
    model.eval().requires_grad_(False)
    return LoadedModel(model=model, tokenizer=tokenizer, special=special, config=config, path=path)


def load_weights(
    model: nn.Module,
    path: Path,
    dtype: torch.dtype,
    device: torch.device,
    only: tuple[str, ...] | None = None,
) -> None:
    """Assign the checkpoint's safetensors into `model` (built on meta): every tensor, or with
    `only` those whose names start with one of its prefixes (the rest stay on meta). Names and
    shapes of all are checked either way (from the files' headers)."""
    shards = shard_map(path)
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    check_names(expected, set(shards))
    with ExitStack() as stack:
        opened = {
            file: stack.enter_context(safe_open(str(path / file), framework="pt"))
            for file in set(shards.values())
        }
        held = {file: set(f.keys()) for file, f in opened.items()}
        for name, file in shards.items():
            if name not in held[file]:
                raise CheckpointError(f"{INDEX_FILE} puts {name} in {file}, which lacks it")
            shape = tuple(opened[file].get_slice(name).get_shape())
            if shape != expected[name]:
                raise CheckpointError(
                    f"{file}: tensor {name} has shape {list(shape)}, config.json implies "
                    f"{list(expected[name])}"
                )
        for name, file in shards.items():
            if only is None or name.startswith(only):
                tensor = opened[file].get_tensor(name).to(device=device, dtype=dtype)
                _assign(model, name, tensor)


def shard_map(path: Path) -> dict[str, str]:
    """{tensor name: safetensors file name} from the index, or from a single model.safetensors."""
    index = path / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (json.JSONDecodeError, KeyError) as error:
            raise CheckpointError(f"{index} has no valid weight_map: {error}") from error
        absent = sorted({f for f in weight_map.values() if not (path / f).is_file()})
        if absent:
            raise CheckpointError(f"{index} names shard files that are missing: {absent}")
        return dict(weight_map)
    single = path / SINGLE_FILE
    if single.is_file():
        with safe_open(str(single), framework="pt") as f:
            return {name: SINGLE_FILE for name in f.keys()}  # noqa: SIM118 (not a dict)
    raise CheckpointError(f"{path} has neither {INDEX_FILE} nor {SINGLE_FILE}")


def check_names(expected: dict[str, tuple[int, ...]], found: set[str]) -> None:
    missing = sorted(set(expected) - found)
    unexpected = sorted(found - set(expected))
    problems = []
    if missing:
        problems.append(f"missing keys {_some(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_some(unexpected)}")
    if problems:
        raise CheckpointError("checkpoint does not match the model: " + "; ".join(problems))


def _some(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_NAMES_SHOWN])
    more = len(names) - MAX_NAMES_SHOWN
    return f"[{shown}]" + (f" and {more} more" if more > 0 else "")


def _assign(model: nn.Module, name: str, tensor: torch.Tensor) -> None:
    module_name, _, leaf = name.rpartition(".")
    module = model.get_submodule(module_name)
    if leaf in module._parameters:
        module._parameters[leaf] = nn.Parameter(tensor, requires_grad=False)
    else:
        module._buffers[leaf] = tensor
