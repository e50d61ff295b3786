"""The tokenizer and the ids of StepFun's special tokens, read from the checkpoint's files.

A checkpoint ships the Qwen2 BPE tokenizer as Hugging Face files (`tokenizer.json`,
`tokenizer_config.json`, `vocab.json`, `merges.txt`) plus `generation_config.json` whose
`eos_token_id` list gives the stop ids (151643 `<|endoftext|>` and 151665 `<|EOT|>` for R1).
No id is hard-coded here: `SpecialTokens.from_tokenizer` looks every token up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoTokenizer, PretrainedConfig, PreTrainedTokenizerBase

from streaming.model.config import CheckpointError
from streaming.model.tags import (
    AUDIO_END,
    AUDIO_PATCH,
    AUDIO_START,
    BOT,
    EOT,
    THINK,
    THINK_END,
    TOOL_CALL,
    TOOL_CALL_END,
    TTS_END,
    TTS_START,
)

GENERATION_CONFIG_FILE = "generation_config.json"
TOKENIZER_FILE = "tokenizer.json"

REQUIRED_TOKENS = (BOT, EOT, AUDIO_START, AUDIO_PATCH, AUDIO_END)


@dataclass(frozen=True)
class SpecialTokens:
    """Ids of the tokens the prompt builder and the reasoning scheduler need.

    `eos` is the tokenizer's own end-of-text (`<|endoftext|>`); `stop_ids` are the ids that end
    generation: the checkpoint's generation_config `eos_token_id` list, plus `eot`.
    `think`/`think_end` are None where the tokenizer has no single token for `<think>` /
    `</think>` (StepFun's R1 tokenizer may spell them in pieces: its own reasoning specials are
    `<|THINK_START|>`/`<|THINK_END|>`); the tags are then plain text to the prompt builder and
    to the reasoning parser. `tts_start`/`tts_end` and `tool_call`/`tool_call_end` (Qwen2's
    `<tool_call>`/`</tool_call>`) are None where a tokenizer lacks them, and likewise text.
    """

    bot: int
    eot: int
    audio_start: int
    audio_patch: int
    audio_end: int
    think: int | None
    think_end: int | None
    eos: int
    stop_ids: tuple[int, ...]
    tts_start: int | None = None
    tts_end: int | None = None
    tool_call: int | None = None
    tool_call_end: int | None = None

    @classmethod
    def from_tokenizer(
        cls, tokenizer: PreTrainedTokenizerBase, generation_eos: list[int] | None = None
    ) -> SpecialTokens:
        """Look up every special token; `generation_eos` is generation_config's eos_token_id."""
        vocab = tokenizer.get_vocab()
        missing = [token for token in REQUIRED_TOKENS if token not in vocab]
        if missing:
            raise CheckpointError(
                f"the tokenizer has no single token for {missing}; a Step-Audio tokenizer has "
                f"all of {list(REQUIRED_TOKENS)}"
            )
        eos = tokenizer.eos_token_id
        if eos is None:
            raise CheckpointError("the tokenizer has no eos_token (tokenizer_config.json)")
        eot = vocab[EOT]
        stops = list(generation_eos or [eos])
        stop_ids = tuple(dict.fromkeys([*stops, eot]))
        return cls(
            bot=vocab[BOT],
            eot=eot,
            audio_start=vocab[AUDIO_START],
            audio_patch=vocab[AUDIO_PATCH],
            audio_end=vocab[AUDIO_END],
            think=vocab.get(THINK),
            think_end=vocab.get(THINK_END),
            eos=eos,
            stop_ids=stop_ids,
            tts_start=vocab.get(TTS_START),
            tts_end=vocab.get(TTS_END),
            tool_call=vocab.get(TOOL_CALL),
            tool_call_end=vocab.get(TOOL_CALL_END),
        )

    @classmethod
    def from_checkpoint(cls, path: str | Path, tokenizer: PreTrainedTokenizerBase) -> SpecialTokens:
        return cls.from_tokenizer(tokenizer, read_generation_eos(path))


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """The checkpoint's tokenizer (fast, Rust-backed), from its Hugging Face tokenizer files."""
    path = Path(path)
    if not (path / TOKENIZER_FILE).is_file():
        raise CheckpointError(f"{path / TOKENIZER_FILE} not found: the checkpoint has no tokenizer")
    try:
        # An empty config stops AutoTokenizer reading config.json, whose model_type
        # (step_audio_2) transformers does not know; tokenizer_config.json names the class.
        return AutoTokenizer.from_pretrained(
            str(path), config=PretrainedConfig(), trust_remote_code=False
        )
    except (OSError, ValueError, KeyError) as error:
        raise CheckpointError(f"cannot load the tokenizer from {path}: {error}") from error


def read_generation_eos(path: str | Path) -> list[int] | None:
    """generation_config.json's eos_token_id as a list, or None where the file is absent."""
    file = Path(path) / GENERATION_CONFIG_FILE
    if not file.is_file():
        return None
    try:
        eos = json.loads(file.read_text(encoding="utf-8")).get("eos_token_id")
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{file} is not valid JSON: {error}") from error
    if eos is None:
        return None
    return [int(i) for i in (eos if isinstance(eos, list) else [eos])]
