"""Train the embedded spoken-arithmetic model on a CPU: `python -m streaming.arith.train`.

Steps: build the tokenizer; synthesise the train and held-out splits and cache their log-mels
in the work directory; train `StepAudio2ForCausalLM` (sizes `--size`) with the loss on the
assistant's tokens only, plus an auxiliary loss that teaches the encoder which word each audio
token hears (labels from espeak-ng's word timings; its linear head is not part of the
checkpoint); every `--eval-every` steps measure held-out answer accuracy; write the checkpoint
in the real format to `--out` (by default where the server looks for the embedded model).

Reproducible from `--seed`: data, initial weights, batch order and each step's sampled modes
all derive from it, so `--resume` (from the work directory's `state.pt`) continues the very same
run. The log is JSON lines (`train.jsonl` in the work directory).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from streaming.arith.batching import embed_batch, epoch_batches, pad_right
from streaming.arith.evaluate import accuracy_report, held_out_accuracy
from streaming.arith.examples import IGNORE, SequenceBuilder, Turn
from streaming.arith.melcache import MelCache, load_or_build
from streaming.arith.model import SIZES, build_model, model_config, save_checkpoint
from streaming.arith.tokenizer import build_tokenizer
from streaming.arith.words import WORDS
from streaming.default_model import SHIPPED_CHECKPOINT
from streaming.model.modeling import StepAudio2ForCausalLM
from streaming.model.tokens import SpecialTokens

STATE_FILE = "state.pt"
LOG_FILE = "train.jsonl"
DEFAULT_WORK_DIR = Path.home() / ".cache" / "step-realtime" / "arith-work"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    size: str = "arith"
    seed: int = 0
    train_items: int = 16000
    eval_items: int = 240
    steps: int = 4000  # the shipped run
    batch_size: int = 32  # questions; a spoken one makes two sequences
    lr: float = 3e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    word_weight: float = 0.5
    autocast: bool = False  # bf16 autocast of the forward pass (CPUs with AMX run it faster)
    eval_every: int = 1000
    eval_subset: int = 96
    save_every: int = 250
    log_every: int = 10


def lr_at(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to `min_lr_ratio` of the peak."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine)


class Trainer:
    def __init__(
        self,
        config: TrainConfig,
        work_dir: Path,
        workers: int | None = None,
        device: str = "cpu",
        cache_dir: Path | None = None,
    ) -> None:
        self.config = config
        self.work_dir = work_dir
        work_dir.mkdir(parents=True, exist_ok=True)
        self.tokenizer = build_tokenizer()
        self.raw_config = model_config(SIZES[config.size], self.tokenizer)
        eos = self.tokenizer.eos_token_id
        eot = self.tokenizer.convert_tokens_to_ids("<|EOT|>")
        self.special = SpecialTokens.from_tokenizer(self.tokenizer, [eos, eot])
        self.builder = SequenceBuilder(self.tokenizer, self.special)
        cache_dir = cache_dir or work_dir
        self.train = load_or_build(cache_dir, "train", config.train_items, config.seed, workers)
        self.eval = load_or_build(cache_dir, "eval", config.eval_items, config.seed, workers)
        self.turns = [_turn(self.train, i) for i in range(len(self.train))]
        self.lengths = np.array([self.train.length(i) for i in range(len(self.train))])
        self.device = torch.device(device)
        self.model = build_model(self.raw_config, config.seed).to(self.device)
        self.model.reset_rotary()
        self.word_head = _word_head(self.model, config.seed).to(self.device)
        params = [*self.model.parameters(), *self.word_head.parameters()]
        # fused: one kernel for the whole update, several times faster than the default on CPU
        self.optimizer = torch.optim.AdamW(
            params, lr=config.lr, betas=(0.9, 0.98), weight_decay=config.weight_decay, fused=True
        )
        self.step = 0
        self._batches: tuple[int, list[np.ndarray]] = (-1, [])

    # -- state -----------------------------------------------------------------------------
    def save_state(self) -> None:
        state = {
            "config": dataclasses.asdict(self.config),
            "step": self.step,
            "model": self.model.state_dict(),
            "word_head": self.word_head.state_dict(),
            "optimizer": self.optimizer.state_dict(),
        }
        tmp = self.work_dir / (STATE_FILE + ".tmp")
        torch.save(state, tmp)
        tmp.replace(self.work_dir / STATE_FILE)

    def load_state(self) -> None:
        state = torch.load(self.work_dir / STATE_FILE, weights_only=True, map_location=self.device)
        # Settings added since the state was saved count as their defaults.
        saved = {**dataclasses.asdict(TrainConfig()), **state["config"]}
        if saved != dataclasses.asdict(self.config):
            raise SystemExit(f"--resume: the saved run used other settings: {saved}")
        self.model.load_state_dict(state["model"])
        self.word_head.load_state_dict(state["word_head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = state["step"]

    # -- training --------------------------------------------------------------------------
    def batch_at(self, step: int) -> np.ndarray:
        """Items of step `step`'s batch: a function of the seed and the step alone."""
        epoch, index = divmod(step, len(self._epoch(0)))
        return self._epoch(epoch)[index]

    def _epoch(self, epoch: int) -> list[np.ndarray]:
        if self._batches[0] != epoch:
            self._batches = (
                epoch,
                epoch_batches(self.lengths, self.config.batch_size, self.config.seed, epoch),
            )
        return self._batches[1]

    def loss(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        rng = np.random.default_rng([self.config.seed, 13, step])
        samples = [
            s
            for i in self.batch_at(step)
            for s in self.builder.samples(self.turns[i], self.turns, rng)
        ]
        ids = pad_right([s.ids for s in samples], self.special.eos).to(self.device)
        labels = pad_right([s.labels for s in samples], IGNORE).to(self.device)
        spans = [c for s in samples for c in s.clips]
        clips = list(dict.fromkeys(spans))  # each clip encoded once
        position = {clip: i for i, clip in enumerate(clips)}
        embeds, audio = embed_batch(
            self.model,
            ids,
            self.special.audio_patch,
            [self.train.mel(c) for c in clips],
            [position[c] for c in spans],
        )
        hidden = self.model.model(inputs_embeds=embeds).last_hidden_state
        targets = labels[:, 1:]
        scored = targets != IGNORE
        logits = self.model.lm_head(hidden[:, :-1][scored])
        lm_loss = F.cross_entropy(logits, targets[scored])
        word_loss = self.word_loss(audio, clips)
        total = lm_loss + self.config.word_weight * word_loss
        return total, {"lm_loss": lm_loss.item(), "word_loss": word_loss.item()}

    def word_loss(self, audio: torch.Tensor, clips: list[int]) -> torch.Tensor:
        """Cross-entropy of the word heard at each audio token: a direct signal to the encoder
        (it learns to listen before the decoder has learned to ask it anything)."""
        if self.config.word_weight == 0 or not clips:
            return torch.zeros((), device=self.device)
        labels = [self.train.word_labels(c) for c in clips]
        frames = torch.cat([audio[i, : len(clip)] for i, clip in enumerate(labels)])
        return F.cross_entropy(self.word_head(frames).float(), torch.cat(labels).to(self.device))

    def run(self, log_file: Path, stop_at: int | None = None) -> None:
        """Train to `config.steps` (or stop early at `stop_at`, state saved, for a later resume)."""
        config = self.config
        end = config.steps if stop_at is None else min(stop_at, config.steps)
        self.model.train()
        start = time.perf_counter()
        progress = tqdm(total=end, initial=self.step, desc="train", unit="step", mininterval=5)
        with log_file.open("a", encoding="utf-8") as log:
            while self.step < end:
                lr = lr_at(self.step, config)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                with torch.autocast(self.device.type, torch.bfloat16, enabled=config.autocast):
                    loss, parts = self.loss(self.step)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
                self.optimizer.step()
                self.step += 1
                progress.update(1)
                progress.set_postfix(loss=f"{loss.item():.3f}")
                if self.step % config.log_every == 0:
                    _log(
                        log,
                        step=self.step,
                        loss=loss.item(),
                        lr=lr,
                        elapsed_s=round(time.perf_counter() - start, 1),
                        **parts,
                    )
                if self.step % config.eval_every == 0 or self.step == config.steps:
                    accuracy = self.evaluate(config.eval_subset)
                    _log(log, step=self.step, **accuracy)
                    progress.write(f"step {self.step}: {accuracy}")
                if self.step % config.save_every == 0 or self.step == end:
                    self.save_state()
        progress.close()

    def evaluate(self, items: int) -> dict[str, float]:
        self.model.eval()
        try:
            results = held_out_accuracy(
                self.model, self.builder, self.eval, range(min(items, len(self.eval)))
            )
        finally:
            self.model.train()
        return accuracy_report(results)


def _turn(cache: MelCache, i: int) -> Turn:
    u = cache.utterances[i]
    return Turn(
        clip=i, mel_frames=cache.length(i), reasoning=u.reasoning, answer=u.answer, text=u.text
    )


def _word_head(model: StepAudio2ForCausalLM, seed: int) -> nn.Linear:
    with torch.random.fork_rng():
        torch.manual_seed(seed + 1)
        return nn.Linear(model.config.text.hidden_size, len(WORDS) + 1)  # + silence


def _log(log, **fields) -> None:
    log.write(json.dumps(fields) + "\n")
    log.flush()


def _boolean(text: str) -> bool:
    if text.lower() not in ("true", "false", "1", "0"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return text.lower() in ("true", "1")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for field in dataclasses.fields(TrainConfig):
        default = getattr(defaults, field.name)
        kind = _boolean if isinstance(default, bool) else type(default)
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=kind, default=default)
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=DEFAULT_WORK_DIR,
        help="mel caches, training state and log (not in the repository)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="where the log-mel caches live (default: the work directory)",
    )
    parser.add_argument(
        "--out", type=Path, default=SHIPPED_CHECKPOINT, help="checkpoint directory to write"
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="processes synthesising data (default: --threads)"
    )
    parser.add_argument("--resume", action="store_true", help="continue from the saved state")
    parser.add_argument(
        "--stop-at",
        type=int,
        default=None,
        help="stop at this step (state saved, checkpoint written); --resume "
        "goes on with the same schedule",
    )
    parser.add_argument(
        "--prepare-only",
        action="store_true",
        help="synthesise the data and cache its log-mels, then stop",
    )
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count(), help="torch threads (and data workers)"
    )
    parser.add_argument("--device", default="cpu", help="cpu (the reference) or cuda")
    parser.add_argument(
        "--dtype",
        choices=["bfloat16", "float32"],
        default="bfloat16",
        help="dtype of the written weights",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    config = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    torch.set_num_threads(args.threads)
    torch.manual_seed(config.seed)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(
        config,
        args.work_dir,
        workers=args.workers or args.threads,
        device=args.device,
        cache_dir=args.cache_dir,
    )
    if args.prepare_only:
        return
    log_file = args.work_dir / LOG_FILE
    if args.resume and (args.work_dir / STATE_FILE).is_file():
        trainer.load_state()
    elif log_file.exists():
        log_file.unlink()
    trainer.run(log_file, stop_at=args.stop_at)
    dtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32
    path = save_checkpoint(args.out, trainer.model.cpu(), trainer.tokenizer, dtype)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
