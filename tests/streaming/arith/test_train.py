"""The training script on tiny sizes: a loadable checkpoint, a log, and an exact resume."""

import dataclasses
import json
from pathlib import Path

import torch

from streaming.arith.examples import MAX_HISTORY_TURNS
from streaming.arith.train import CANDIDATE_FILE, LOG_FILE, STATE_FILE, TrainConfig, Trainer
from tests.support.presets import float32_model


def test_training_writes_a_checkpoint_that_loads(tiny_run) -> None:
    loaded = float32_model(tiny_run.checkpoint)
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


def _warm_config(tiny_run) -> TrainConfig:
    """The default recipe's shape at tiny sizes: warm start from the tiny run, audio frozen."""
    return dataclasses.replace(
        tiny_run.config, init_from=str(tiny_run.checkpoint), frozen_audio_steps=4, steps=4
    )


def test_warm_start_maps_the_vocabulary_and_keeps_the_audio_side(tmp_path: Path, tiny_run) -> None:
    source = float32_model(tiny_run.checkpoint).model
    trainer = Trainer(_warm_config(tiny_run), tmp_path / "work", cache_dir=tiny_run.cache_dir)
    assert trainer.warm_start is not None and trainer.warm_start.rows_new == 0
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    for name, tensor in source.named_parameters():
        torch.testing.assert_close(before[name], tensor, rtol=0, atol=0)
    trainer.run(tmp_path / "log.jsonl")
    changed = {
        name
        for name, p in trainer.model.named_parameters()
        if not torch.equal(p.detach(), before[name])
    }
    assert changed, "the decoder did not train"
    assert not any(name.startswith(("encoder.", "adapter.")) for name in changed)
    assert all(name.startswith(("model.", "lm_head.")) for name in changed)


def test_a_run_goes_on_from_its_candidate_on_another_machine(tmp_path: Path, tiny_run) -> None:
    config = _warm_config(tiny_run)
    candidate = tmp_path / "candidate"
    first = Trainer(config, tmp_path / "here", cache_dir=tiny_run.cache_dir)
    first.run(tmp_path / "here.jsonl", stop_at=2, candidate=candidate)
    assert json.loads((candidate / CANDIDATE_FILE).read_text())["step"] == 2
    # elsewhere: no work directory, only the committed candidate
    second = Trainer(config, tmp_path / "elsewhere", cache_dir=tiny_run.cache_dir)
    assert second.candidate_step(candidate) == 2
    second.load_candidate(candidate)
    saved = float32_model(candidate).model
    for name, tensor in saved.named_parameters():
        torch.testing.assert_close(dict(second.model.named_parameters())[name], tensor)
    second.run(tmp_path / "elsewhere.jsonl", candidate=candidate)
    assert second.step == config.steps
    assert json.loads((candidate / CANDIDATE_FILE).read_text())["step"] == config.steps
    other_recipe = Trainer(
        dataclasses.replace(config, lr=config.lr / 2),
        tmp_path / "other",
        cache_dir=tiny_run.cache_dir,
    )
    assert other_recipe.candidate_step(candidate) is None


def test_the_audio_side_thaws_after_its_frozen_steps(tmp_path: Path, tiny_run) -> None:
    config = dataclasses.replace(_warm_config(tiny_run), frozen_audio_steps=2)
    trainer = Trainer(config, tmp_path / "work", cache_dir=tiny_run.cache_dir)
    encoder = {n: p.detach().clone() for n, p in trainer.model.encoder.named_parameters()}
    trainer.run(tmp_path / "log.jsonl", stop_at=2)
    assert all(torch.equal(p, encoder[n]) for n, p in trainer.model.encoder.named_parameters())
    trainer.run(tmp_path / "log.jsonl")
    assert not all(torch.equal(p, encoder[n]) for n, p in trainer.model.encoder.named_parameters())
    steps = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    word_losses = [entry["word_loss"] for entry in steps if "word_loss" in entry]
    assert word_losses[:2] == [0.0, 0.0] and all(loss > 0 for loss in word_losses[2:])
