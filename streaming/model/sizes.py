"""Every model size the project builds, in one table: `ModelSizes` and its presets.

The random checkpoints of `writer.write_checkpoint` (tests, benchmarks) and the embedded model
that `streaming.arith` trains take their sizes from here. Two of them are small test models:
`TINY` (the random checkpoint every test loads) and `ARITH_TINY` (the arith trainer's quick
run); each user's command line calls its own one "tiny" (`WRITER_PRESETS`, `ARITH_PRESETS`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSizes:
    """Sizes of a written checkpoint (decoder, encoder, tokenizer)."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    n_audio_state: int
    n_audio_head: int
    n_audio_layer: int
    n_mels: int = 128
    n_audio_ctx: int = 1500
    bpe_vocab_size: int = 1000
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0
    max_position_embeddings: int = 16384


# The random checkpoint of every test (tests/conftest.py's `tiny_checkpoint`).
TINY = ModelSizes(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    n_audio_state=64,
    n_audio_head=4,
    n_audio_layer=2,
)
# About 50M parameters: the decode step of the engine and modes benchmarks.
BENCH50M = ModelSizes(
    hidden_size=512,
    intermediate_size=1536,
    num_hidden_layers=14,
    num_attention_heads=8,
    num_key_value_heads=2,
    n_audio_state=256,
    n_audio_head=4,
    n_audio_layer=4,
)
# The smallest that vLLM's CPU kernels take (head size 32), starting in seconds: the checkpoint
# of benchmarks/engine.py --quick (tests/streaming/engine's conformance suite: the same sizes
# with a shorter context).
VLLM_CPU_SMALL = ModelSizes(
    hidden_size=128,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    n_audio_state=64,
    n_audio_head=4,
    n_audio_layer=2,
)
# The shipped model (2 M parameters): narrow, so that a CPU trains it in minutes. A 96-wide
# encoder tells the few dozen words apart; a 128-wide decoder holds the ~1000 facts of the task.
# n_audio_ctx stays 1500 (30 s clips), as the server's 25 s chunks need.
ARITH = ModelSizes(
    hidden_size=128,
    intermediate_size=384,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    n_audio_state=96,
    n_audio_head=4,
    n_audio_layer=2,
    max_position_embeddings=4096,
)
# The arith trainer's tests: ARITH's code path in seconds.
ARITH_TINY = ModelSizes(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=1,
    num_attention_heads=2,
    num_key_value_heads=1,
    n_audio_state=32,
    n_audio_head=2,
    n_audio_layer=1,
    n_audio_ctx=1500,
    max_position_embeddings=4096,
)

# The names each command line takes; "tiny" is a different model in each.
# `write_checkpoint(path, name)`, benchmarks/modes.py --size, benchmarks/engine.py --model:
WRITER_PRESETS = {"tiny": TINY, "bench50m": BENCH50M}
# streaming.arith.train --size:
ARITH_PRESETS = {"arith": ARITH, "tiny": ARITH_TINY}

__all__ = [
    "ARITH",
    "ARITH_PRESETS",
    "ARITH_TINY",
    "BENCH50M",
    "TINY",
    "VLLM_CPU_SMALL",
    "WRITER_PRESETS",
    "ModelSizes",
]
