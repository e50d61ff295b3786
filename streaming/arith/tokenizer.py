"""The embedded model's tokenizer: a small Qwen2-style byte-level BPE learned on the task's text.

It is the checkpoint writer's tokenizer (Qwen2's pre-tokenizer with single digits, StepFun's
special tokens after the learned vocabulary, in the real relative order), saved in the same
files, but its merges are learned from every reasoning and answer the task can produce, the
off-task sentences, system prompts, tool schemas and tool outputs it is trained on, and the
writer's general English, so that number words are single tokens and a target is about thirty
tokens long. Qwen2's `<tool_call>` and `</tool_call>` are added as plain tokens (kept in decoded
text, as `<think>` is), after StepFun's tokens: ids are always looked up by name.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tokenizers import AddedToken
from transformers import PreTrainedTokenizerFast

from streaming.arith import context, offtask
from streaming.arith.data import (
    REJECTION,
    REJECTION_REASONING,
    TRAIN_PREFIXES,
    TRAIN_SUFFIXES,
    all_problems,
    phrasings,
)
from streaming.model.prompt import TRANSCRIBE_PROMPT, tool_schemas_json
from streaming.model.tokens import TOOL_CALL, TOOL_CALL_END
from streaming.model.writer import ENGLISH_TEXT, save_tokenizer
from streaming.model.writer import build_tokenizer as build_writer_tokenizer

# Byte alphabet (256) plus merges: every task word whole, and the tool schemas' JSON keys.
BPE_VOCAB_SIZE = 1024
TOOL_TOKENS = (TOOL_CALL, TOOL_CALL_END)
CORPUS_SAMPLES = 300  # system prompts and tool lists drawn for the corpus (fixed seed)
FIXED_LINE_WEIGHT = 100


def task_corpus() -> list[str]:
    """Every line the model reads or writes as text: targets, phrasings, prompts, English."""
    # Lines the model reads or writes in every sequence of their kind weigh as much as the rest.
    lines = [REJECTION, REJECTION_REASONING, TRANSCRIBE_PROMPT] * FIXED_LINE_WEIGHT
    for problem in all_problems():
        lines += [problem.reasoning, problem.answer]
        lines.append(context.call_arguments(problem.a, problem.op, problem.b))
    for op in ("+", "-", "*", "/"):
        lines += phrasings(op, held_out=False)
    lines += [*TRAIN_PREFIXES, *TRAIN_SUFFIXES, *offtask.all_train_sentences()]
    lines += ["human", "assistant", "system", "function_output", "tool_json_schemas"]
    rng = np.random.default_rng(0)
    for _ in range(CORPUS_SAMPLES):
        lines.append(context.system_prompt(False, rng))
        lines.append(tool_schemas_json(context.tools(False, bool(rng.random() < 0.7), rng)))
        value = int(rng.integers(context.RESULT_MAX))
        lines.append(context.tool_output(value, False, rng))
        lines.append(f"The tool returned {value}.")
    lines += [json.dumps({"function": "calculate"})]
    return lines + ENGLISH_TEXT.splitlines()


def build_tokenizer(
    corpus: list[str] | None = None, vocab_size: int = BPE_VOCAB_SIZE
) -> PreTrainedTokenizerFast:
    """Byte-level BPE on `corpus` (default: `task_corpus()`) with StepFun's special tokens and
    the tool-call tags."""
    tokenizer = build_writer_tokenizer(vocab_size, corpus if corpus is not None else task_corpus())
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in TOOL_TOKENS])
    return tokenizer


def write_tokenizer(tokenizer: PreTrainedTokenizerFast, path: Path) -> None:
    """The Hugging Face files a Qwen2 checkpoint ships (the writer's own layout)."""
    path.mkdir(parents=True, exist_ok=True)
    save_tokenizer(tokenizer, path)
