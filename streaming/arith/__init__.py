"""The embedded default model: spoken arithmetic, trained here on a CPU.

See docs/ARCHITECTURE.md, "The embedded default".

    python -m streaming.arith.train      # data, training, checkpoint -> streaming/checkpoints/arith
    python -m streaming.arith.evaluate   # held-out accuracy -> benchmarks/results/arith_eval.json

Modules: `data` (questions, voices, phrasings, espeak-ng synthesis), `melcache` (log-mels and
word labels cached in a work directory), `tokenizer`, `examples` (training sequences built with
the serving `PromptBuilder`), `batching` (encoder + decoder batches, greedy decoding), `model`
(sizes, checkpoint writing), `train`, `evaluate`.
"""

import os

# Idle OpenMP threads sleep instead of spinning. On a CPU shared with other work, spinning
# threads made training steps three times slower (2.3 s against 0.7 s on two cores). libgomp
# reads this when torch loads it, so it is set here, before any module of this package
# imports torch; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
