"""A tiny training run shared by the tests: real data, real trainer, real checkpoint files."""

from dataclasses import dataclass
from pathlib import Path

import pytest

from streaming.arith.train import TrainConfig, main

TINY_RUN = TrainConfig(
    size="tiny",
    init_from="",  # from random weights, the audio side trained too
    frozen_audio_steps=0,
    train_items=24,
    offtask_items=4,
    truncated_items=4,
    fragment_items=2,
    silence_items=2,
    noise_items=2,
    eval_items=3,
    eval_declined_items=1,
    steps=4,
    batch_size=3,
    transcribe_rows=2,
    eval_every=2,
    eval_subset=3,
    save_every=2,
    log_every=1,
    warmup_steps=2,
)


@dataclass(frozen=True)
class TinyRun:
    config: TrainConfig
    work_dir: Path
    cache_dir: Path
    checkpoint: Path


def train_argv(config: TrainConfig, work_dir: Path, cache_dir: Path, out: Path) -> list[str]:
    argv = [
        "--work-dir",
        str(work_dir),
        "--cache-dir",
        str(cache_dir),
        "--out",
        str(out),
        "--threads",
        "1",
        "--workers",
        "2",
        "--candidate",
        str(work_dir / "candidate"),
    ]
    for name, value in vars(config).items():
        argv += [f"--{name.replace('_', '-')}", str(value)]
    return argv


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    root = tmp_path_factory.mktemp("arith_run")
    run = TinyRun(TINY_RUN, root / "work", root / "mels", root / "checkpoint")
    main(train_argv(TINY_RUN, run.work_dir, run.cache_dir, run.checkpoint))
    return run
