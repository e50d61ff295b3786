"""Log-mels of a data split, computed once and kept on disk (a work directory, not the repo).

With each clip go its word labels: for every audio token (12.5 Hz, one per `<audio_patch>`),
the id of the word spoken at its centre (`words.WORDS`), or 0 for silence. The trainer teaches
the encoder to say which word it hears with them, from espeak-ng's own word timings.

Synthesis and the front end run in worker processes. espeak-ng carries hidden state from one
utterance to the next (its pitch flutter runs on), so the same text comes out a few samples
different on a second call: to make item i the same whatever the number of workers, every
chunk of `ITEMS_PER_TASK` items is made by a fresh process, in order.

A cache is `.npy` files (frames concatenated time-major in float16, word labels, and their
offsets) plus a JSON header naming what it holds; a header that does not match the request
(other seed, size or data version) means the cache is rebuilt.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from streaming.arith.data import SpokenWord, Utterance, make_utterance, speak_words
from streaming.arith.words import word_id
from streaming.model.audio_encoder import audio_token_count
from streaming.model.frontend import log_mel

DATA_VERSION = 3  # bump when the generator changes what an item is
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
) -> MelCache:
    """The cached log-mels of items 0..count-1 of `split`, built first if absent or stale."""
    base = work_dir / f"mels-{split}"
    header = {"split": split, "count": count, "seed": seed, "version": DATA_VERSION}
    header_file = base.with_suffix(".json")
    utterances = [make_utterance(split, i, seed) for i in range(count)]
    files = {
        name: f"{base}-{name}.npy" for name in ("frames", "offsets", "labels", "label-offsets")
    }
    if header_file.is_file() and json.loads(header_file.read_text()) == header:
        return MelCache(
            np.load(files["frames"], mmap_mode="r"),
            np.load(files["offsets"]),
            np.load(files["labels"]),
            np.load(files["label-offsets"]),
            utterances,
        )
    work_dir.mkdir(parents=True, exist_ok=True)
    clips = list(
        tqdm(
            _compute(utterances, seed, workers, items_per_task),
            total=count,
            desc=f"mels {split}",
            unit="clip",
            mininterval=2,
        )
    )
    arrays = {
        "frames": np.concatenate([m for m, _ in clips]).astype(np.float16),
        "offsets": np.cumsum([0] + [len(m) for m, _ in clips]).astype(np.int64),
        "labels": np.concatenate([w for _, w in clips]).astype(np.int16),
        "label-offsets": np.cumsum([0] + [len(w) for _, w in clips]).astype(np.int64),
    }
    for name, array in arrays.items():
        np.save(files[name], array)
    header_file.write_text(json.dumps(header))
    return MelCache(
        arrays["frames"], arrays["offsets"], arrays["labels"], arrays["label-offsets"], utterances
    )


def _compute(
    utterances: list[Utterance], seed: int, workers: int | None, items_per_task: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    workers = workers or os.cpu_count() or 1
    tasks = [utterances[i : i + items_per_task] for i in range(0, len(utterances), items_per_task)]
    # spawn, not fork, and one task per process: no espeak-ng state is inherited or carried.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, max_tasks_per_child=1
    ) as pool:
        for clips in pool.map(_clips, tasks, [seed] * len(tasks)):
            yield from clips


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
    """The id of the word spoken at the centre of each audio token, 0 where none is."""
    labels = np.zeros(n_tokens, dtype=np.int16)
    centres = (np.arange(n_tokens) + 0.5) * AUDIO_TOKEN_SECONDS
    for word in words:
        end = min(word.end_s, word.start_s + MAX_WORD_SECONDS)
        labels[(centres >= word.start_s) & (centres < end)] = word_id(word.word)
    return labels
