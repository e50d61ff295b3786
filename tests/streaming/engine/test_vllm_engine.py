"""The vLLM engine's own parts that need no running vLLM: refusals with what to do, the mapping of
audio rows to vLLM items, the plugin's config, the audio-side loader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from streaming.engine import vllm_engine
from streaming.engine.base import EngineError, Prompt
from streaming.engine.factory import load_audio_side
from streaming.engine.vllm_engine import VllmEngine, VllmOptions, vllm_prompt
from streaming.engine.vllm_plugin import MAX_ROWS_PER_ITEM, StepAudio2TextConfig, register
from streaming.model.checkpoint import load_checkpoint
from streaming.model.config import CheckpointError

PATCH = 7


def test_a_missing_extra_says_how_to_install_it(monkeypatch, tiny_checkpoint: Path) -> None:
    monkeypatch.setattr(vllm_engine, "vllm_available", lambda: False)
    with pytest.raises(EngineError, match=r"pip install -e '\.\[vllm\]'"):
        VllmEngine(tiny_checkpoint)


def test_a_checkpoint_the_cpu_build_cannot_serve_is_refused(tiny_checkpoint: Path) -> None:
    # The tiny preset's head size is 16: vLLM's CPU kernels start at 32.
    with pytest.raises(CheckpointError, match="head size 16.*--engine torch"):
        VllmEngine(tiny_checkpoint)


def test_a_directory_that_is_no_step_audio_checkpoint_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    with pytest.raises(CheckpointError, match="not a Step-Audio"):
        VllmEngine(tmp_path)


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="gpu_memory_utilization"):
        VllmOptions(gpu_memory_utilization=1.5)
    with pytest.raises(ValueError, match="tensor_parallel_size"):
        VllmOptions(tensor_parallel_size=0)


def test_each_run_of_audio_positions_is_one_item_behind_one_patch_id() -> None:
    rows = torch.arange(5 * 2, dtype=torch.float32).view(5, 2)
    ids = [1, PATCH, PATCH, PATCH, 2, PATCH, PATCH, 3]  # the later run is the shorter
    collapsed, items = vllm_prompt(Prompt(ids, rows, PATCH))
    assert collapsed == [1, PATCH, 2, PATCH, 3]
    assert [item.tolist() for item in items] == [rows[:3].tolist(), rows[3:].tolist()]


def test_a_generated_patch_id_after_the_audio_is_plain_text() -> None:
    # A fork's context: a generated token equal to the patch id, with no row, after the audio.
    rows = torch.ones(3, 2)
    ids = [1, PATCH, PATCH, PATCH, 2, PATCH]
    collapsed, items = vllm_prompt(Prompt(ids, rows, PATCH, audio_positions=[1, 2, 3]))
    assert collapsed == [1, PATCH, 2, PATCH] and len(items) == 1
    # Before the audio, vLLM would put the rows on it: refused, not misplaced.
    stray = Prompt([1, PATCH, 2, PATCH], torch.ones(1, 2), PATCH, audio_positions=[3])
    with pytest.raises(ValueError, match="without audio rows"):
        vllm_prompt(stray)


def test_a_run_longer_than_one_chunk_is_refused() -> None:
    n = MAX_ROWS_PER_ITEM + 1
    with pytest.raises(ValueError, match="25 s"):
        vllm_prompt(Prompt([PATCH] * n, torch.zeros(n, 2), PATCH))


def test_the_plugin_reads_stepfun_config_as_a_qwen2_text_config(tiny_checkpoint: Path) -> None:
    from transformers import AutoConfig

    register()
    register()  # vLLM may load plugins more than once
    config = AutoConfig.from_pretrained(str(tiny_checkpoint))
    assert isinstance(config, StepAudio2TextConfig)
    raw = json.loads((tiny_checkpoint / "config.json").read_text())["text_config"]
    text = config.get_text_config()
    assert text.hidden_size == raw["hidden_size"]
    assert text.num_key_value_heads == raw["num_attention_groups"]
    assert text.vocab_size == raw["vocab_size"]


def test_the_audio_side_encodes_as_the_whole_model_does(tiny_checkpoint: Path) -> None:
    audio_side = load_audio_side(tiny_checkpoint, dtype=torch.float32)
    whole = load_checkpoint(tiny_checkpoint, dtype=torch.float32)
    wave = np.random.default_rng(0).standard_normal(24_000).astype(np.float32) * 0.1
    [ours] = audio_side.model.encode_audio(wave)
    [theirs] = whole.model.encode_audio(wave)
    assert torch.equal(ours, theirs)
    # The decoder was never read: it stays on the meta device.
    assert audio_side.model.model.embed_tokens.weight.device.type == "meta"
