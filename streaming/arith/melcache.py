"""Log-mels of a data split, computed once and kept on disk (a work directory, not the repo).

With each clip go its word labels: for every audio token (12.5 Hz, one per `<audio_patch>`),
the id of the word spoken at its centre (`words.WORDS`; `words.OTHER` for other speech), or 0
for silence. The trainer teaches
the encoder to say which word it hears with them, from espeak-ng's own word timings.

Synthesis and the front end run in worker processes. espeak-ng carries hidden state from one
utterance to the next (its pitch flutter runs on), so the same text comes out a few samples
different on a second call: to make item i the same whatever the number of workers, every
chunk of `ITEMS_PER_TASK` items is made by a fresh process, in order.

A cache is `.npy` files (frames concatenated time-major in float16, word labels, and their
offsets) plus a JSON header naming what it holds; a header that does not match the request
(other seed, size, data version or items) means the cache is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from streaming.arith.data import QUESTION, SpokenWord, Utterance, make_item, speak_words
from streaming.arith.words import word_id
from streaming.model.audio_encoder import audio_token_count
from streaming.model.frontend import log_mel

DATA_VERSION = 4  # bump when the generator changes what an item is
AUDIO_TOKEN_SECONDS = 0.08  # one adaptor output per 8 mel frames (12.5 Hz)
MAX_WORD_SECONDS = 0.8  # the last word's event runs to the end of the clip: cut it there
ITEMS_PER_TASK = 200  # items per fresh worker process (a process starts in about a second)


@dataclass
class MelCache:
    """Clip i is `mel(i)`: [n_mels, frames] float32; `utterances[i]` says what it holds."""

    frames: np.ndarray  # [total_frames, n_mels] float16
    offsets: np.ndarray  # [n + 1] int64
    labels: np.ndarray  # [total_audio_tokens] int16: word ids, 0 for silence
    label_offsets: np.ndarray  # [n + 1] int64
    utterances: list[Utterance]

    def __len__(self) -> int:
        return len(self.utterances)

    def mel(self, i: int) -> torch.Tensor:
        return torch.from_numpy(
            self.frames[self.offsets[i] : self.offsets[i + 1]].astype(np.float32).T
        )

    def length(self, i: int) -> int:
        return int(self.offsets[i + 1] - self.offsets[i])

    def word_labels(self, i: int) -> torch.Tensor:
        """[audio_token_count(length(i))] word id per audio token (0: silence)."""
        return torch.from_numpy(
            self.labels[self.label_offsets[i] : self.label_offsets[i + 1]].astype(np.int64)
        )


def load_or_build(
    work_dir: Path,
    split: str,
    count: int,
    seed: int = 0,
    workers: int | None = None,
    items_per_task: int = ITEMS_PER_TASK,
    kind: str = QUESTION,
) -> MelCache:
    """The cached log-mels of items 0..count-1 of one kind of `split` (`data.make_item`),
    built first if absent or stale."""
    return load_or_build_all(work_dir, [(split, kind, count)], seed, workers, items_per_task)[
        (split, kind)
    ]


def load_or_build_all(
    work_dir: Path,
    requests: Sequence[tuple[str, str, int]],
    seed: int = 0,
    workers: int | None = None,
    items_per_task: int = ITEMS_PER_TASK,
) -> dict[tuple[str, str], MelCache]:
    """`load_or_build` of each (split, kind, count), the missing ones made in one pool of
    workers (a chunk never spans two caches, so each is what it would be alone)."""
    caches: dict[tuple[str, str], MelCache] = {}
    missing: list[tuple[_CacheFiles, list[Utterance]]] = []
    for split, kind, count in requests:
        files = _CacheFiles(work_dir, split, kind, count, seed)
        utterances = [make_item(split, kind, i, seed) for i in range(count)]
        if files.valid(utterances):
            caches[(split, kind)] = files.load(utterances)
        else:
            missing.append((files, utterances))
    if not missing:
        return caches
    work_dir.mkdir(parents=True, exist_ok=True)
    tasks = [
        (n, utterances[i : i + items_per_task])
        for n, (_, utterances) in enumerate(missing)
        for i in range(0, len(utterances), items_per_task)
    ]
    made: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in missing]
    names = ", ".join(f"{f.split} {f.kind}" for f, _ in missing)
    total = sum(len(u) for _, u in missing)
    with tqdm(total=total, desc=f"mels ({names})", unit="clip", mininterval=2) as progress:
        for n, clips in _compute([t for _, t in tasks], [n for n, _ in tasks], seed, workers):
            made[n] += clips
            progress.update(len(clips))
    for (files, utterances), clips in zip(missing, made, strict=True):
        caches[(files.split, files.kind)] = files.save(clips, utterances)
    return caches


@dataclass(frozen=True)
class _CacheFiles:
    work_dir: Path
    split: str
    kind: str
    count: int
    seed: int

    @property
    def base(self) -> Path:
        name = f"mels-{self.split}" if self.kind == QUESTION else f"mels-{self.split}-{self.kind}"
        return self.work_dir / name

    def header(self, utterances: list[Utterance]) -> dict:
        return {
            "split": self.split,
            "kind": self.kind,
            "count": self.count,
            "seed": self.seed,
            "version": DATA_VERSION,
            "items": items_digest(utterances),
        }

    def file(self, name: str) -> str:
        return f"{self.base}-{name}.npy"

    def valid(self, utterances: list[Utterance]) -> bool:
        header_file = self.base.with_suffix(".json")
        return header_file.is_file() and json.loads(header_file.read_text()) == self.header(
            utterances
        )

    def load(self, utterances: list[Utterance]) -> MelCache:
        return MelCache(
            np.load(self.file("frames"), mmap_mode="r"),
            np.load(self.file("offsets")),
            np.load(self.file("labels")),
            np.load(self.file("label-offsets")),
            utterances,
        )

    def save(
        self, clips: list[tuple[np.ndarray, np.ndarray]], utterances: list[Utterance]
    ) -> MelCache:
        arrays = {
            "frames": np.concatenate([m for m, _ in clips]).astype(np.float16),
            "offsets": np.cumsum([0] + [len(m) for m, _ in clips]).astype(np.int64),
            "labels": np.concatenate([w for _, w in clips]).astype(np.int16),
            "label-offsets": np.cumsum([0] + [len(w) for _, w in clips]).astype(np.int64),
        }
        for name, array in arrays.items():
            np.save(self.file(name), array)
        self.base.with_suffix(".json").write_text(json.dumps(self.header(utterances)))
        return MelCache(
            arrays["frames"],
            arrays["offsets"],
            arrays["labels"],
            arrays["label-offsets"],
            utterances,
        )


def items_digest(utterances: list[Utterance]) -> str:
    """A digest of what the items are (texts, voices, settings): a cache made from other items
    (an edited template, say) is stale even where split, count and seed agree."""
    return hashlib.sha256(repr(utterances).encode()).hexdigest()[:16]


def _compute(
    tasks: list[list[Utterance]], owners: list[int], seed: int, workers: int | None
) -> Iterator[tuple[int, list[tuple[np.ndarray, np.ndarray]]]]:
    """(owner, clips) of each task, in order."""
    workers = workers or os.cpu_count() or 1
    # spawn, not fork, and one task per process: no espeak-ng state is inherited or carried.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, max_tasks_per_child=1
    ) as pool:
        yield from zip(owners, pool.map(_clips, tasks, [seed] * len(tasks)), strict=True)


def _init_worker() -> None:
    torch.set_num_threads(1)


def _clips(utterances: list[Utterance], seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(log-mel [frames, n_mels] float16, word label per audio token) of each utterance."""
    clips = []
    for utterance in utterances:
        wave, words = speak_words(utterance, seed)
        mel = log_mel(wave).T.numpy().astype(np.float16)
        clips.append((mel, word_labels(words, audio_token_count(len(mel)))))
    return clips


def word_labels(words: list[SpokenWord], n_tokens: int) -> np.ndarray:
    """The id of the word spoken at the centre of each audio token, `SILENCE` where none is."""
    labels = np.zeros(n_tokens, dtype=np.int16)
    centres = (np.arange(n_tokens) + 0.5) * AUDIO_TOKEN_SECONDS
    for word in words:
        end = min(word.end_s, word.start_s + MAX_WORD_SECONDS)
        labels[(centres >= word.start_s) & (centres < end)] = word_id(word.word)
    return labels
