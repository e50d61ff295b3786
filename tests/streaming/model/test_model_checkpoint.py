"""load_checkpoint on written checkpoints: keys, values, dtypes, and every CheckpointError."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from streaming.model.checkpoint import INDEX_FILE, LoadedModel, load_checkpoint
from streaming.model.config import CheckpointError
from streaming.model.sizes import TINY
from streaming.model.writer import write_checkpoint


@pytest.fixture
def copy(tiny_checkpoint: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny checkpoint, to break."""
    return Path(shutil.copytree(tiny_checkpoint, tmp_path / "checkpoint"))


def weight_map(path: Path) -> dict[str, str]:
    return json.loads((path / INDEX_FILE).read_text())["weight_map"]


def rewrite_shard(path: Path, key: str, change) -> None:
    """Apply `change(tensors)` to the shard holding `key`, then fix the index to match."""
    file = path / weight_map(path)[key]
    tensors = load_file(str(file))
    change(tensors)
    save_file(tensors, str(file), metadata={"format": "pt"})
    index = json.loads((path / INDEX_FILE).read_text())
    index["weight_map"] = {k: v for k, v in index["weight_map"].items() if v != file.name}
    index["weight_map"].update(dict.fromkeys(tensors, file.name))
    (path / INDEX_FILE).write_text(json.dumps(index))


def test_state_dict_keys_are_the_checkpoint_keys(loaded: LoadedModel, tiny_checkpoint: Path):
    assert set(loaded.model.state_dict()) == set(weight_map(tiny_checkpoint))
    keys = set(weight_map(tiny_checkpoint))
    assert {
        "encoder.blocks.1.attn.key.weight",
        "encoder.positional_embedding.weight",
        "adapter.linear2.weight",
        "model.embed_tokens.weight",
        "model.norm.weight",
        "model.layers.1.self_attn.q_proj.bias",
        "lm_head.weight",
    } <= keys
    assert "encoder.blocks.0.attn.key.bias" not in keys


def test_sharded_index_is_used(tiny_checkpoint: Path):
    assert len(set(weight_map(tiny_checkpoint).values())) > 1


def test_values_dtype_device(loaded: LoadedModel, tiny_checkpoint: Path):
    state = loaded.model.state_dict()
    for key, file in list(weight_map(tiny_checkpoint).items())[::7]:
        with safe_open(str(tiny_checkpoint / file), framework="pt") as f:
            expected = f.get_tensor(key).float()
        torch.testing.assert_close(state[key], expected, rtol=0, atol=0)
    assert all(
        p.dtype == torch.float32 and p.device.type == "cpu" and not p.requires_grad
        for p in loaded.model.parameters()
    )
    assert not any(t.is_meta for t in state.values())
    assert not torch.equal(state["lm_head.weight"], state["model.embed_tokens.weight"])


def test_bfloat16_load(tiny_checkpoint: Path):
    model = load_checkpoint(tiny_checkpoint).model
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.model.rotary_emb.inv_freq.dtype == torch.float32  # rotary stays exact


def test_single_file_checkpoint(tmp_path: Path, loaded: LoadedModel):
    path = write_checkpoint(tmp_path / "single", TINY, seed=0, shard_size=1 << 40)
    assert weight_map(path) and len(set(weight_map(path).values())) == 1
    (path / INDEX_FILE).unlink()
    (path / next(path.glob("model-*.safetensors")).name).rename(path / "model.safetensors")
    reloaded = load_checkpoint(path, dtype=torch.float32).model.state_dict()
    for key, value in loaded.model.state_dict().items():
        torch.testing.assert_close(reloaded[key], value, rtol=0, atol=0)


def test_missing_directory(tmp_path: Path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere")


def test_missing_config(copy: Path):
    (copy / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json"):
        load_checkpoint(copy)


def test_wrong_architecture(copy: Path):
    config = json.loads((copy / "config.json").read_text())
    config["architectures"] = ["Qwen2ForCausalLM"]
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="Qwen2ForCausalLM.*StepAudio2ForCausalLM"):
        load_checkpoint(copy)


def test_shape_mismatch_names_key_and_shapes(copy: Path):
    key = "adapter.linear1.weight"
    rewrite_shard(copy, key, lambda t: t.update({key: torch.zeros(2048, 65)}))
    expected = r"adapter\.linear1\.weight.*\[2048, 65\].*\[2048, 64\]"
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(copy)


def test_config_that_does_not_match_weights(copy: Path):
    config = json.loads((copy / "config.json").read_text())
    config["text_config"]["intermediate_size"] = 96
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"model\.layers\.\d\.mlp\.\w+_proj\.weight"):
        load_checkpoint(copy)


def test_missing_key_is_named(copy: Path):
    key = "encoder.after_norm.bias"
    rewrite_shard(copy, key, lambda t: t.pop(key))
    with pytest.raises(CheckpointError, match=r"missing keys \[encoder\.after_norm\.bias\]"):
        load_checkpoint(copy)


def test_unexpected_key_is_named(copy: Path):
    key = "adapter.linear1.weight"
    rewrite_shard(copy, key, lambda t: t.update({"adapter.extra.weight": torch.zeros(3)}))
    with pytest.raises(CheckpointError, match=r"unexpected keys \[adapter\.extra\.weight\]"):
        load_checkpoint(copy)


def test_missing_shard_file(copy: Path):
    shard = sorted(set(weight_map(copy).values()))[0]
    (copy / shard).unlink()
    with pytest.raises(CheckpointError, match=f"missing.*{shard}"):
        load_checkpoint(copy)


def test_index_that_lies(copy: Path):
    index = json.loads((copy / INDEX_FILE).read_text())
    files = sorted(set(index["weight_map"].values()))
    key = next(k for k, f in index["weight_map"].items() if f == files[0])
    index["weight_map"][key] = files[1]
    (copy / INDEX_FILE).write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=f"{key} in {files[1]}"):
        load_checkpoint(copy)


def test_no_weights(copy: Path):
    (copy / INDEX_FILE).unlink()
    with pytest.raises(CheckpointError, match="neither"):
        load_checkpoint(copy)


def test_missing_tokenizer(copy: Path):
    (copy / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="tokenizer"):
        load_checkpoint(copy)


def test_flat_text_config_is_read(copy: Path):
    """Some re-exports keep the Qwen2 fields at the top level of config.json."""
    config = json.loads((copy / "config.json").read_text())
    config.update(config.pop("text_config"))
    (copy / "config.json").write_text(json.dumps(config))
    assert load_checkpoint(copy, dtype=torch.float32).config.text.hidden_size == TINY.hidden_size
