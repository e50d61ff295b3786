"""Warm start: a model's weights taken from an earlier checkpoint of the same sizes.

Tokenizers differ between generations of the embedded model (new special tokens shift every id,
new words add BPE merges), so the vocabulary-shaped tensors (`model.embed_tokens.weight` and
`lm_head.weight`) are copied row by row, matched by token string; a token the earlier
checkpoint lacked keeps its fresh initialisation. Every other tensor must match in name and
shape and is copied whole.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from streaming.model.checkpoint import SINGLE_FILE, load_checkpoint
from streaming.model.modeling import StepAudio2ForCausalLM

VOCABULARY_TENSORS = ("model.embed_tokens.weight", "lm_head.weight")


@dataclass(frozen=True)
class WarmStart:
    source: Path
    digest: str  # of the source's weights file: which checkpoint the run grew from
    tensors: int  # copied whole
    rows_mapped: int  # vocabulary rows found in the source by token string
    rows_new: int  # vocabulary rows left as initialised


def warm_start(
    model: StepAudio2ForCausalLM, tokenizer: PreTrainedTokenizerBase, source: Path
) -> WarmStart:
    """Copy `source`'s weights into `model` (in place), vocabulary rows by token string."""
    loaded = load_checkpoint(source, dtype=torch.float32)
    donor = dict(loaded.model.named_parameters())
    old_ids = loaded.tokenizer.get_vocab()
    pairs = [
        (new, old_ids[token]) for token, new in tokenizer.get_vocab().items() if token in old_ids
    ]
    # The rows past the tokenizer (the vocabulary is rounded up) were trained never to be
    # predicted: they come along in order, as far as the source has them.
    padding = zip(
        range(len(tokenizer), model.config.text.vocab_size),
        range(len(loaded.tokenizer), loaded.config.text.vocab_size),
        strict=False,  # the shorter of the two
    )
    rows = pairs + list(padding)
    new_rows = torch.tensor([new for new, _ in rows])
    old_rows = torch.tensor([old for _, old in rows])
    copied = 0
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name not in donor:
                raise ValueError(f"warm start: {source} has no tensor {name}")
            if name in VOCABULARY_TENSORS:
                parameter[new_rows] = donor[name][old_rows].to(parameter.dtype)
                continue
            if donor[name].shape != parameter.shape:
                raise ValueError(
                    f"warm start: {name} is {tuple(donor[name].shape)} in {source}, "
                    f"{tuple(parameter.shape)} here (other model sizes?)"
                )
            parameter.copy_(donor[name])
            copied += 1
    return WarmStart(
        source=source,
        digest=weights_digest(source),
        tensors=copied,
        rows_mapped=len(pairs),
        rows_new=len(tokenizer) - len(pairs),
    )


def weights_digest(checkpoint: Path) -> str:
    return hashlib.sha256((checkpoint / SINGLE_FILE).read_bytes()).hexdigest()[:16]
