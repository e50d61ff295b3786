"""Write random-weight checkpoints in exactly StepFun's format: `write_checkpoint(path, sizes)`.

Tests and benchmarks need a real checkpoint directory without the 66 GB download. This writes
the same files a Step-Audio-R1 download has: `config.json` (StepFun's layout), sharded bf16
safetensors with `model.safetensors.index.json`, `generation_config.json`, and Qwen2-style
tokenizer files (`tokenizer.json`, `tokenizer_config.json`, `vocab.json`, `merges.txt`): a small
byte-level BPE trained here on embedded English, with Qwen2's pre-tokenizer (single digits) and
StepFun's special tokens added after the learned vocabulary. The loader reads it through the
same code path as a real checkpoint.

Sizes: a `ModelSizes`, or its name in `PRESETS` ("tiny", "bench50m"). They are defined in
streaming/model/sizes.py; `ModelSizes`, `TINY` and `BENCH50M` are imported from here too.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import PreTrainedTokenizerFast

from streaming.model.checkpoint import INDEX_FILE
from streaming.model.config import AudioEncoderConfig, StepAudio2Config
from streaming.model.modeling import StepAudio2ForCausalLM
from streaming.model.sizes import BENCH50M, TINY, ModelSizes
from streaming.model.sizes import WRITER_PRESETS as PRESETS
from streaming.model.tokens import (
    AUDIO_END,
    AUDIO_PATCH,
    AUDIO_START,
    BOT,
    EOT,
    GENERATION_CONFIG_FILE,
    THINK,
    THINK_END,
    TTS_END,
    TTS_START,
)

ENDOFTEXT = "<|endoftext|>"
# Added after the learned vocabulary, in the relative order of the real tokenizer.
SPECIAL_TOKENS = (ENDOFTEXT, "<|im_start|>", "<|im_end|>", BOT, EOT)
AUDIO_TOKENS = (AUDIO_START, AUDIO_END, AUDIO_PATCH, TTS_START, TTS_END)
REASONING_TOKENS = (THINK, THINK_END)  # plain added tokens: they stay in decoded text
# Qwen2's pre-tokenizer split: contractions, words, single digits, punctuation, whitespace.
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
VOCAB_ROUNDING = 128  # embedding rows are a multiple of this, as real checkpoints pad theirs
DEFAULT_SHARD_BYTES = 2 * 1024**2

ENGLISH_TEXT = """\
What is seven times six? Seven times six is forty two. 7 * 6 = 42.
What is twelve plus nine? Twelve plus nine is twenty one. 12 + 9 = 21.
What is one hundred minus thirty five? It is sixty five. 100 - 35 = 65.
What is eighty one divided by nine? Eighty one divided by nine is nine. 81 / 9 = 9.
Zero, one, two, three, four, five, six, seven, eight, nine, ten, eleven, twelve, thirteen,
fourteen, fifteen, sixteen, seventeen, eighteen, nineteen, twenty, thirty, forty, fifty, sixty,
seventy, eighty, ninety, hundred, thousand, million. 0 1 2 3 4 5 6 7 8 9 10 100 1000 2025 3.14
I hear: seven times six. The user asks a question about arithmetic, so I should answer briefly.
The answer is the product of the two numbers. Let me think about it step by step.
Hello! How are you today? I am fine, thank you. Can you help me with my homework?
Sure, I can help. Please tell me the question, and I will explain the answer clearly.
The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a step.
It was a bright cold day in April, and the clocks were striking thirteen.
Speech is turned into text, the model reasons about what it heard, and then it speaks.
The weather is sunny and warm, with a light breeze from the west in the afternoon.
Please call Stella. Ask her to bring these things with her from the store: six spoons of
fresh snow peas, five thick slabs of blue cheese, and maybe a snack for her brother Bob.
We also need a small plastic snake and a big toy frog for the kids.
She can scoop these things into three red bags, and we will go meet her Wednesday at the
train station. Numbers like 3, 14, 159, 2653 and 58979 should be read one digit at a time.
"Don't worry," she said. "It's going to be all right; we'll find the way, won't we?"
Questions, answers, reasons: who, what, when, where, why, and how? Yes, no, maybe.
"""


def write_checkpoint(
    path: str | Path,
    sizes: ModelSizes | str = TINY,
    *,
    seed: int = 0,
    shard_size: int = DEFAULT_SHARD_BYTES,
    dtype: torch.dtype = torch.bfloat16,
) -> Path:
    """Write a random-weight checkpoint into directory `path` (created); returns the path.

    `shard_size` is the most bytes per safetensors shard (a tensor larger than it gets a shard
    of its own), `seed` makes weights and tokenizer reproducible.
    """
    sizes = PRESETS[sizes] if isinstance(sizes, str) else sizes
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(sizes.bpe_vocab_size)
    vocab_size = padded_vocab_size(len(tokenizer))
    vocab = tokenizer.get_vocab()
    eos, eot = vocab[ENDOFTEXT], vocab[EOT]
    raw = StepAudio2Config.make_raw(audio_config(sizes), text_config(sizes, vocab_size, eos))
    _write_json(path / "config.json", raw)
    _write_json(
        path / GENERATION_CONFIG_FILE,
        {
            "bos_token_id": eos,
            "eos_token_id": [eos, eot],
            "pad_token_id": eos,
        },
    )
    save_tokenizer(tokenizer, path)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = StepAudio2ForCausalLM(StepAudio2Config.from_dict(raw))
    # state_dict() holds the parameters only: the rotary buffers are not persistent.
    state = {name: t.detach().to(dtype).contiguous() for name, t in model.state_dict().items()}
    _write_shards(path, state, shard_size)
    return path


def parameter_count(sizes: ModelSizes | str) -> int:
    """Parameters of a checkpoint of these sizes (with the embedded tokenizer)."""
    sizes = PRESETS[sizes] if isinstance(sizes, str) else sizes
    vocab = padded_vocab_size(len(build_tokenizer(sizes.bpe_vocab_size)))
    raw = StepAudio2Config.make_raw(audio_config(sizes), text_config(sizes, vocab, 0))
    with torch.device("meta"):
        model = StepAudio2ForCausalLM(StepAudio2Config.from_dict(raw))
    return sum(p.numel() for p in model.parameters())


def build_tokenizer(
    bpe_vocab_size: int, corpus: list[str] | None = None
) -> PreTrainedTokenizerFast:
    """A Qwen2-style byte-level BPE trained on `corpus` (default: ENGLISH_TEXT's lines), with
    StepFun's special tokens after the learned vocabulary, in the real relative order."""
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=bpe_vocab_size,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(corpus if corpus is not None else ENGLISH_TEXT.splitlines(), trainer)
    bpe.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    bpe.add_tokens([AddedToken(t, special=False, normalized=False) for t in REASONING_TOKENS])
    bpe.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in AUDIO_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=ENDOFTEXT,
        pad_token=ENDOFTEXT,
        clean_up_tokenization_spaces=False,
    )


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, path: Path) -> None:
    """Hugging Face tokenizer files as Qwen2 checkpoints ship them."""
    tokenizer.save_pretrained(str(path))
    tokenizer.backend_tokenizer.model.save(str(path))  # vocab.json, merges.txt
    config_file = path / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config.update(
        tokenizer_class="Qwen2Tokenizer",
        bos_token=None,
        errors="replace",
        model_max_length=131072,
        split_special_tokens=False,
        add_prefix_space=False,
    )
    config["added_tokens_decoder"] = {
        str(token_id): {
            "content": token.content,
            "lstrip": token.lstrip,
            "normalized": token.normalized,
            "rstrip": token.rstrip,
            "single_word": token.single_word,
            "special": token.special,
        }
        for token_id, token in sorted(tokenizer.added_tokens_decoder.items())
    }
    _write_json(config_file, config)


def padded_vocab_size(n_tokens: int) -> int:
    """Embedding rows for a tokenizer of `n_tokens`: rounded up, as real checkpoints pad."""
    return -(-n_tokens // VOCAB_ROUNDING) * VOCAB_ROUNDING


def audio_config(sizes: ModelSizes) -> AudioEncoderConfig:
    return AudioEncoderConfig(
        n_mels=sizes.n_mels,
        n_audio_ctx=sizes.n_audio_ctx,
        n_audio_state=sizes.n_audio_state,
        n_audio_head=sizes.n_audio_head,
        n_audio_layer=sizes.n_audio_layer,
        llm_dim=sizes.hidden_size,
    )


def text_config(sizes: ModelSizes, vocab_size: int, eos: int) -> dict:
    """text_config as StepFun writes it (their field names, including the unused ones)."""
    return {
        "hidden_size": sizes.hidden_size,
        "intermediate_size": sizes.intermediate_size,
        "num_attention_heads": sizes.num_attention_heads,
        "num_attention_groups": sizes.num_key_value_heads,
        "num_key_value_heads": sizes.num_key_value_heads,
        "num_hidden_layers": sizes.num_hidden_layers,
        "max_seq_len": sizes.max_position_embeddings,
        "vocab_size": vocab_size,
        "rms_norm_eps": sizes.rms_norm_eps,
        "eos_token_id": eos,
        "pad_token_id": eos,
        "rope_theta": sizes.rope_theta,
        "max_position_embeddings": sizes.max_position_embeddings,
        "rope_scaling": None,
        "torch_dtype": "bfloat16",
    }


def _write_shards(path: Path, state: dict[str, torch.Tensor], shard_size: int) -> None:
    shards: list[dict[str, torch.Tensor]] = [{}]
    used = 0
    for name, tensor in state.items():
        size = tensor.numel() * tensor.element_size()
        if shards[-1] and used + size > shard_size:
            shards.append({})
            used = 0
        shards[-1][name] = tensor
        used += size
    weight_map = {}
    for number, shard in enumerate(shards, start=1):
        file = f"model-{number:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(path / file), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, file))
    total = sum(t.numel() * t.element_size() for t in state.values())
    _write_json(path / INDEX_FILE, {"metadata": {"total_size": total}, "weight_map": weight_map})


def _write_json(file: Path, data: dict) -> None:
    file.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


__all__ = [
    "BENCH50M",
    "PRESETS",
    "TINY",
    "ModelSizes",
    "audio_config",
    "build_tokenizer",
    "padded_vocab_size",
    "parameter_count",
    "save_tokenizer",
    "text_config",
    "write_checkpoint",
]
