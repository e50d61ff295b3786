"""The training script on tiny sizes: a loadable checkpoint, a log, and an exact resume."""

import json
from pathlib import Path

import torch

from streaming.arith.examples import MAX_HISTORY_TURNS
from streaming.arith.train import LOG_FILE, STATE_FILE, Trainer
from streaming.model.checkpoint import load_checkpoint


def test_training_writes_a_checkpoint_that_loads(tiny_run) -> None:
    loaded = load_checkpoint(tiny_run.checkpoint, dtype=torch.float32)
    assert loaded.config.text.hidden_size == 32
    assert loaded.config.max_history_turns == MAX_HISTORY_TURNS
    assert loaded.tokenizer.convert_ids_to_tokens(loaded.special.think) == "<think>"
    assert loaded.tokenizer.convert_ids_to_tokens(loaded.special.tool_call) == "<tool_call>"
    assert loaded.tokenizer.convert_ids_to_tokens(loaded.special.tool_call_end) == "</tool_call>"
    assert sorted(p.name for p in tiny_run.checkpoint.iterdir()) == [
        "config.json",
        "generation_config.json",
        "merges.txt",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.json",
    ]
    state = torch.load(tiny_run.work_dir / STATE_FILE, weights_only=True)
    assert state["step"] == tiny_run.config.steps
    for name, tensor in loaded.model.state_dict().items():
        if name in state["model"]:  # written in bf16: the trained weights, rounded
            expected = state["model"][name].to(torch.bfloat16).float()
            torch.testing.assert_close(tensor, expected, rtol=0, atol=0)


def test_training_logs_loss_and_held_out_accuracy(tiny_run) -> None:
    lines = (tiny_run.work_dir / LOG_FILE).read_text().splitlines()
    log = [json.loads(line) for line in lines]
    losses = [entry["loss"] for entry in log if "loss" in entry]
    assert len(losses) == tiny_run.config.steps and all(loss > 0 for loss in losses)
    accuracies = [entry for entry in log if "acc_think" in entry]
    assert [entry["step"] for entry in accuracies] == [2, 4]
    assert all(0 <= entry["acc_no_think"] <= 1 for entry in accuracies)
    assert all(0 <= entry["rejection_think"] <= 1 for entry in accuracies)
    steps = [entry for entry in log if "loss" in entry]
    assert all(entry["tokens"] > 0 and entry["clips"] > 0 for entry in steps)


def test_resume_continues_the_same_run(tmp_path: Path, tiny_run) -> None:
    straight = Trainer(tiny_run.config, tmp_path / "straight", cache_dir=tiny_run.cache_dir)
    straight.run(tmp_path / "straight.jsonl")

    first = Trainer(tiny_run.config, tmp_path / "resumed", cache_dir=tiny_run.cache_dir)
    first.run(tmp_path / "resumed.jsonl", stop_at=2)
    second = Trainer(tiny_run.config, tmp_path / "resumed", cache_dir=tiny_run.cache_dir)
    second.load_state()
    assert second.step == 2
    second.run(tmp_path / "resumed.jsonl")

    for name, tensor in straight.model.state_dict().items():
        torch.testing.assert_close(second.model.state_dict()[name], tensor, rtol=0, atol=0)
