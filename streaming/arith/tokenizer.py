"""The embedded model's tokenizer: a small Qwen2-style byte-level BPE learned on the task's text.

It is the checkpoint writer's tokenizer (Qwen2's pre-tokenizer with single digits, StepFun's
special tokens after the learned vocabulary, in the real relative order), saved in the same
files, but its merges are learned from every reasoning and answer the task
can produce (plus the writer's general English), so that number words are single tokens and a
target is about thirty tokens long.
"""

from __future__ import annotations

from pathlib import Path

from transformers import PreTrainedTokenizerFast

from streaming.arith.data import TRAIN_PREFIXES, TRAIN_SUFFIXES, all_problems, phrasings
from streaming.model.writer import ENGLISH_TEXT, save_tokenizer
from streaming.model.writer import build_tokenizer as build_writer_tokenizer

BPE_VOCAB_SIZE = 512  # byte alphabet (256) plus merges; enough for every task word whole

SYSTEM_PROMPTS = (
    "You are a helpful assistant.",
    "Answer the question.",
    "You are a voice assistant. Keep your answers short.",
)


def task_corpus() -> list[str]:
    """Every line the model reads or writes as text: targets, phrasings, prompts, English."""
    lines = []
    for problem in all_problems():
        lines += [problem.reasoning, problem.answer]
    for op in ("+", "-", "*", "/"):
        lines += phrasings(op, held_out=False)
    lines += [*TRAIN_PREFIXES, *TRAIN_SUFFIXES]
    lines += ["human", "assistant", "system", *SYSTEM_PROMPTS]
    return lines + ENGLISH_TEXT.splitlines()


def build_tokenizer(
    corpus: list[str] | None = None, vocab_size: int = BPE_VOCAB_SIZE
) -> PreTrainedTokenizerFast:
    """Byte-level BPE on `corpus` (default: `task_corpus()`) with StepFun's special tokens."""
    return build_writer_tokenizer(vocab_size, corpus if corpus is not None else task_corpus())


def write_tokenizer(tokenizer: PreTrainedTokenizerFast, path: Path) -> None:
    """The Hugging Face files a Qwen2 checkpoint ships (the writer's own layout)."""
    path.mkdir(parents=True, exist_ok=True)
    save_tokenizer(tokenizer, path)
