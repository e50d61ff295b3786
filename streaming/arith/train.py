"""Train the embedded spoken-arithmetic model on a CPU: `python -m streaming.arith.train`.

Steps: build the tokenizer; synthesise the training clips of every kind (questions, off-task
sentences, questions cut short, speech fragments, silence, noise) and a held-out monitor set,
and cache their log-mels in the work directory; build `StepAudio2ForCausalLM` (sizes `--size`)
and warm-start it from the shipped checkpoint (`warmstart.py`; `--init-from ""` starts from
random weights); train it on random sessions (`streaming.arith.sessions`: system prompts,
tools, up to 20 earlier turns, a live turn in one of three modes) and transcription prompts,
with the loss on the assistant's tokens only. For its first `--frozen-audio-steps` steps the
audio encoder and adaptor are frozen and each clip's adaptor output is computed once; once they
train, an auxiliary loss teaches the encoder which word each audio token hears (labels from
espeak-ng's word timings; its linear head is not part of the checkpoint). Every
`--eval-every` steps measure held-out answer accuracy and rejection; every `--save-every`
steps save the state and a candidate checkpoint (`--candidate`, to be committed); at the end
write the checkpoint in the real format to `--out` (by default where the server looks for the
embedded model), with `max_history_turns` in its config.json.

Reproducible from `--seed`: data, initial weights and each step's sessions all derive from it
(a step's batch is a function of the seed and the step alone), so `--resume` from the work
directory's `state.pt` continues the very same run; from a committed candidate (another
machine) it continues with fresh optimizer moments. The log is JSON lines (`train.jsonl` in
the work directory). `streaming/arith/STATUS.md` has the recipe's time and results.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from streaming.arith.batching import encode_grouped, length_groups, pad_right, splice_audio
from streaming.arith.data import DECLINED_KINDS, QUESTION
from streaming.arith.evaluate import accuracy_report, answer_replies, held_out_accuracy
from streaming.arith.examples import IGNORE, Sample, SequenceBuilder, Turn
from streaming.arith.melcache import MelCache, load_or_build_all
from streaming.arith.model import SIZES, build_model, model_config, save_checkpoint, token_id
from streaming.arith.sessions import ClipPool, SessionSampler
from streaming.arith.tokenizer import build_tokenizer
from streaming.arith.warmstart import warm_start
from streaming.arith.words import LABELS
from streaming.default_model import SHIPPED_CHECKPOINT
from streaming.model.checkpoint import load_checkpoint
from streaming.model.modeling import StepAudio2ForCausalLM
from streaming.model.tokens import EOT, SpecialTokens

STATE_FILE = "state.pt"
LOG_FILE = "train.jsonl"
CANDIDATE_FILE = "training.json"
DEFAULT_WORK_DIR = Path.home() / ".cache" / "step-realtime" / "arith-work"
# Where a run keeps its latest weights while it trains: in the source tree, to be committed.
DEFAULT_CANDIDATE = Path(__file__).parent / "candidate"
RESTART_WARMUP_STEPS = 20


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    size: str = "arith"
    seed: int = 0
    # Warm start (`warmstart.py`): a checkpoint directory, "shipped" for the embedded default
    # (each shipped checkpoint grows from the one before it), or "" for random weights.
    init_from: str = "shipped"
    # For its first `frozen_audio_steps` steps the run keeps the audio encoder and adaptor as
    # the warm start left them: each clip's adaptor output is computed once, and a step trains
    # the decoder alone (no word loss), at about half the cost. Then the audio side trains too,
    # at the schedule's low end of the learning rate. 0: never frozen.
    frozen_audio_steps: int = 3000
    # Spoken questions: 16,000 (runs 4, 5, 6 had 3,000, 10,000, 16,000) keep the warm start's
    # hearing; on a small pool the decoder learns the clips, and each step up answered better
    # (STATUS.md).
    train_items: int = 16_000
    offtask_items: int = 800
    truncated_items: int = 600
    fragment_items: int = 300
    silence_items: int = 200
    noise_items: int = 200
    eval_items: int = 240  # held-out questions for the in-training monitor
    eval_declined_items: int = 48  # held-out clips of each declined kind, for the monitor
    steps: int = 3000
    # Of the live turns, clips to decline: a fifth teaches declining (99-100% of off-task
    # clips) at 1-2% of real questions wrongly declined.
    live_declined: float = 0.2
    batch_size: int = 6  # sessions per step
    transcribe_rows: int = 5  # transcription sequences per step
    typed_rows: int = 12  # typed single questions per step (`SessionSampler.typed_session`)
    max_batch_tokens: int = 1024  # padded tokens per decoder forward (length-sorted groups)
    encode_group: int = 8  # clips per encoder forward (length-sorted)
    # A warm start keeps more of what it knew at 1e-3: at step 500 the monitor read 81%
    # (think) with 2e-3 and 3,000 questions (run 4), 91% with 1e-3 and 10,000 (run 5).
    lr: float = 1e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 200
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    word_weight: float = 0.5  # the encoder's word loss (when the audio side trains)
    autocast: bool = False  # bf16 autocast of the forward pass (CPUs with AMX run it faster)
    eval_every: int = 500
    eval_subset: int = 96
    save_every: int = 100
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
        eot = token_id(self.tokenizer, EOT)
        self.special = SpecialTokens.from_tokenizer(self.tokenizer, [eos, eot])
        self.builder = SequenceBuilder(self.tokenizer, self.special)
        cache_dir = cache_dir or work_dir
        requests = [("train", kind, count) for kind, count in _kind_counts(config).items()]
        requests.append(("eval", QUESTION, config.eval_items))
        requests += [("eval", kind, config.eval_declined_items) for kind in DECLINED_KINDS]
        caches = load_or_build_all(cache_dir, requests, config.seed, workers)
        self.train = MelPool({kind: caches[("train", kind)] for kind in _kind_counts(config)})
        self.eval = caches[("eval", QUESTION)]
        self.eval_declined = MelPool({kind: caches[("eval", kind)] for kind in DECLINED_KINDS})
        self.sampler = SessionSampler(
            self.train.clip_pool(),
            lambda text: len(self.builder.encode(text)),
            live_declined=config.live_declined,
        )
        self.device = torch.device(device)
        self.model = build_model(self.raw_config, config.seed)
        self.warm_start = (
            warm_start(self.model, self.tokenizer, init_path(config.init_from))
            if config.init_from
            else None
        )
        self.model.to(self.device).reset_rotary()
        self.word_head = _word_head(self.model, config.seed).to(self.device)
        self.audio_rows: list[torch.Tensor] | None = None  # while frozen: made at first use
        # Frozen parameters get no gradient, so the optimizer leaves them alone until they thaw.
        params = [*self.model.parameters(), *self.word_head.parameters()]
        # fused: one kernel for the whole update, several times faster than the default on CPU
        self.optimizer = torch.optim.AdamW(
            params, lr=config.lr, betas=(0.9, 0.98), weight_decay=config.weight_decay, fused=True
        )
        self.step = 0
        self.set_audio_trainable()
        self.restarted_at: int | None = None  # the step a run resumed from a candidate at

    def audio_frozen(self) -> bool:
        return self.step < self.config.frozen_audio_steps

    def set_audio_trainable(self) -> None:
        trainable = not self.audio_frozen()
        self.model.encoder.requires_grad_(trainable)
        self.model.adapter.requires_grad_(trainable)
        if trainable:
            self.audio_rows = None

    @torch.no_grad()
    def encode_all(self) -> list[torch.Tensor]:
        """Every training clip's adaptor output [n_i, hidden], from the frozen audio side."""
        rows: list[torch.Tensor] = []
        chunk = 256  # clips per call: bounded memory, length-sorted inside
        for start in tqdm(range(0, len(self.train), chunk), desc="encode clips", mininterval=5):
            mels = [self.train.mel(c) for c in range(start, min(start + chunk, len(self.train)))]
            rows += encode_grouped(self.model, mels, self.config.encode_group)
        return rows

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
        self.set_audio_trainable()

    def save_candidate(self, directory: Path) -> None:
        """The weights so far as a real checkpoint, with `training.json` (recipe and step): small
        enough to commit, so that a run goes on from it on another machine (`--resume`)."""
        save_checkpoint(directory, self.model, self.tokenizer)
        progress = {
            "step": self.step,
            "recipe": dataclasses.asdict(self.config),
            "warm_start": self.warm_start.digest if self.warm_start else None,
        }
        (directory / CANDIDATE_FILE).write_text(json.dumps(progress, indent=2) + "\n")

    def candidate_step(self, directory: Path) -> int | None:
        """The step of the candidate in `directory`, if it is one of this very recipe."""
        file = directory / CANDIDATE_FILE
        if not file.is_file():
            return None
        progress = json.loads(file.read_text())
        recipe = {**dataclasses.asdict(TrainConfig()), **progress["recipe"]}
        return int(progress["step"]) if recipe == dataclasses.asdict(self.config) else None

    def load_candidate(self, directory: Path) -> None:
        """Go on from a candidate: its weights (rounded to bf16) and step, fresh optimizer
        moments, so the learning rate warms up again over `RESTART_WARMUP_STEPS`."""
        step = self.candidate_step(directory)
        if step is None:
            raise SystemExit(f"--resume: {directory} holds no candidate of this recipe")
        candidate = dict(load_checkpoint(directory, dtype=torch.float32).model.named_parameters())
        with torch.no_grad():
            for name, parameter in self.model.named_parameters():
                parameter.copy_(candidate[name])
        self.audio_rows = None  # the audio side is the candidate's now
        self.step = self.restarted_at = step
        self.set_audio_trainable()

    # -- training --------------------------------------------------------------------------
    def samples_at(self, step: int) -> list[Sample]:
        """Step `step`'s sequences: a function of the seed and the step alone."""
        rng = np.random.default_rng([self.config.seed, 13, step])
        sessions = [self.sampler.session(rng) for _ in range(self.config.batch_size)]
        samples = [self.builder.sample(session) for session in sessions]
        for _ in range(self.config.transcribe_rows):
            turn = self.sampler.transcription_turn(rng)
            samples.append(self.builder.transcription_sample(turn))
        for _ in range(self.config.typed_rows):
            samples.append(self.builder.sample(self.sampler.typed_session(rng)))
        return samples

    def loss(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        samples = self.samples_at(step)
        clips = list(dict.fromkeys(c for s in samples for c in s.clips))  # each encoded once
        if self.audio_frozen():
            if self.audio_rows is None:
                self.audio_rows = self.encode_all()
            audio = [self.audio_rows[c] for c in clips]
        else:
            mels = [self.train.mel(c) for c in clips]
            audio = encode_grouped(self.model, mels, self.config.encode_group)
        rows = dict(zip(clips, audio, strict=True))
        lm_sum = torch.zeros((), device=self.device)
        scored_tokens = 0
        for group in length_groups([len(s.ids) for s in samples], self.config.max_batch_tokens):
            batch = [samples[i] for i in group]
            ids = pad_right([s.ids for s in batch], self.special.eos).to(self.device)
            labels = pad_right([s.labels for s in batch], IGNORE).to(self.device)
            embeds = splice_audio(
                self.model, ids, self.special.audio_patch, [rows[c] for s in batch for c in s.clips]
            )
            hidden = self.model.model(inputs_embeds=embeds).last_hidden_state
            targets = labels[:, 1:]
            scored = targets != IGNORE
            logits = self.model.lm_head(hidden[:, :-1][scored])
            lm_sum = lm_sum + F.cross_entropy(logits.float(), targets[scored], reduction="sum")
            scored_tokens += int(scored.sum())
        lm_loss = lm_sum / max(1, scored_tokens)
        word_loss = self.word_loss(audio, clips)
        total = lm_loss + self.config.word_weight * word_loss
        return total, {
            "lm_loss": lm_loss.item(),
            "word_loss": word_loss.item(),
            "tokens": sum(len(s.ids) for s in samples),
            "clips": len(clips),
        }

    def word_loss(self, audio: list[torch.Tensor], clips: list[int]) -> torch.Tensor:
        """Cross-entropy of the word heard at each audio token: a direct signal to the encoder
        (it learns to listen before the decoder has learned to ask it anything)."""
        if self.config.word_weight == 0 or self.audio_frozen() or not clips:
            return torch.zeros((), device=self.device)
        labels = torch.cat([self.train.word_labels(c) for c in clips]).to(self.device)
        frames = torch.cat(audio)
        return F.cross_entropy(self.word_head(frames).float(), labels)

    def run(
        self, log_file: Path, stop_at: int | None = None, candidate: Path | None = None
    ) -> None:
        """Train to `config.steps` (or stop early at `stop_at`, state saved, for a later resume),
        writing the weights to `candidate` as often as the state."""
        config = self.config
        end = config.steps if stop_at is None else min(stop_at, config.steps)
        self.model.train()
        start, cpu_start = time.perf_counter(), time.process_time()
        progress = tqdm(total=end, initial=self.step, desc="train", unit="step", mininterval=5)
        with log_file.open("a", encoding="utf-8") as log:
            while self.step < end:
                if self.step == config.frozen_audio_steps:
                    self.set_audio_trainable()
                lr = lr_at(self.step, config)
                if self.restarted_at is not None:
                    since = self.step - self.restarted_at + 1
                    lr *= min(1.0, since / RESTART_WARMUP_STEPS)
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
                        # this process's CPU time (all threads): on a busy machine the wall
                        # time is not the run's own
                        cpu_s=round(time.process_time() - cpu_start, 1),
                        load=round(os.getloadavg()[0], 2),  # the machine's, for timings
                        **parts,
                    )
                if self.step % config.eval_every == 0 or self.step == config.steps:
                    accuracy = self.evaluate(config.eval_subset)
                    _log(log, step=self.step, **accuracy)
                    progress.write(f"step {self.step}: {accuracy}")
                if self.step % config.save_every == 0 or self.step == end:
                    self.save_state()
                    if candidate is not None:
                        self.save_candidate(candidate)
        progress.close()

    def evaluate(self, items: int) -> dict[str, float]:
        """Held-out single questions (think, no_think) and the declined clips' rejection."""
        self.model.eval()
        try:
            results = held_out_accuracy(
                self.model, self.builder, self.eval, range(min(items, len(self.eval)))
            )
            declined = [
                turn.utterance
                for turns in self.eval_declined.clip_pool().turns.values()
                for turn in turns
            ]
            mels = [self.eval_declined.mel(c) for c in range(len(self.eval_declined))]
            replies = answer_replies(self.model, self.builder, declined, mels, "think")
        finally:
            self.model.train()
        report = accuracy_report(results)
        report["rejection_think"] = round(sum(r.declined for r in replies) / len(replies), 4)
        return report


class MelPool:
    """Several mel caches as one: clip ids run through them in order (the kinds' order)."""

    def __init__(self, caches: dict[str, MelCache]) -> None:
        self.caches = caches
        self._starts = np.cumsum([0] + [len(c) for c in caches.values()])
        self._list = list(caches.values())

    def __len__(self) -> int:
        return int(self._starts[-1])

    def _locate(self, clip: int) -> tuple[MelCache, int]:
        index = int(np.searchsorted(self._starts, clip, side="right")) - 1
        return self._list[index], clip - int(self._starts[index])

    def mel(self, clip: int) -> torch.Tensor:
        cache, i = self._locate(clip)
        return cache.mel(i)

    def word_labels(self, clip: int) -> torch.Tensor:
        cache, i = self._locate(clip)
        return cache.word_labels(i)

    def clip_pool(self) -> ClipPool:
        turns: dict[str, list[Turn]] = {}
        for start, (kind, cache) in zip(self._starts, self.caches.items(), strict=False):
            turns[kind] = [
                Turn(cache.utterances[i], int(start) + i, cache.length(i))
                for i in range(len(cache))
            ]
        return ClipPool(turns)


def init_path(init_from: str) -> Path:
    return SHIPPED_CHECKPOINT if init_from == "shipped" else Path(init_from)


def _kind_counts(config: TrainConfig) -> dict[str, int]:
    return {
        QUESTION: config.train_items,
        "offtask": config.offtask_items,
        "truncated": config.truncated_items,
        "fragment": config.fragment_items,
        "silence": config.silence_items,
        "noise": config.noise_items,
    }


def _word_head(model: StepAudio2ForCausalLM, seed: int) -> nn.Linear:
    with torch.random.fork_rng():
        torch.manual_seed(seed + 1)
        return nn.Linear(model.config.text.hidden_size, LABELS)


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
        "--workers", type=int, default=None, help="processes synthesising data (default: cores)"
    )
    parser.add_argument(
        "--candidate",
        type=Path,
        default=DEFAULT_CANDIDATE,
        help="where the weights so far are written every --save-every steps (commit it to go "
        "on elsewhere; removed when the run ends)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue: from the work directory's state, or from the candidate if it is further",
    )
    parser.add_argument(
        "--stop-at",
        type=int,
        default=None,
        help="stop at this step (state and candidate saved); --resume goes on with the same "
        "schedule",
    )
    parser.add_argument(
        "--prepare-only",
        action="store_true",
        help="synthesise the data and cache its log-mels, then stop",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (one holds up best when other work shares the machine)",
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
        config, args.work_dir, workers=args.workers, device=args.device, cache_dir=args.cache_dir
    )
    if args.prepare_only:
        return
    log_file = args.work_dir / LOG_FILE
    if args.resume:
        if (args.work_dir / STATE_FILE).is_file():
            trainer.load_state()
        if (trainer.candidate_step(args.candidate) or 0) > trainer.step:
            trainer.load_candidate(args.candidate)
        print(f"resuming at step {trainer.step}")
    elif log_file.exists():
        log_file.unlink()
    trainer.run(log_file, stop_at=args.stop_at, candidate=args.candidate)
    if trainer.step < config.steps:
        print(f"stopped at step {trainer.step}: the candidate is in {args.candidate}")
        return
    dtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32
    path = save_checkpoint(args.out, trainer.model.cpu(), trainer.tokenizer, dtype)
    shutil.rmtree(args.candidate, ignore_errors=True)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
