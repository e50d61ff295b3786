"""Which checkpoint to load when the user names none.

The embedded default is a small spoken-arithmetic model trained in this repository and shipped
inside the package (see the issue on the embedded default). Until it has been trained and
committed, the fallback is an UNTRAINED placeholder: a tiny random-weight checkpoint in the same
format, written locally on first use (nothing is downloaded). It exercises the whole server, but
its answers are gibberish; the log says so every time it is loaded.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

SHIPPED_CHECKPOINT = Path(__file__).parent / "checkpoints" / "arith"
PLACEHOLDER_SEED = 0
REAL_WEIGHTS_HINT = (
    "to serve Step-Audio-R1, download stepfun-ai/Step-Audio-R1 (or Step-Audio-2-mini) from "
    "Hugging Face and pass its directory with --model"
)


def default_checkpoint() -> Path:
    """The shipped checkpoint if present, else the untrained placeholder (written once)."""
    if (SHIPPED_CHECKPOINT / "config.json").is_file():
        logger.info("loading the embedded default model %s; %s", SHIPPED_CHECKPOINT,
                    REAL_WEIGHTS_HINT)
        return SHIPPED_CHECKPOINT
    placeholder = _cache_dir() / "untrained-placeholder"
    if not (placeholder / "config.json").is_file():
        from streaming.model.writer import write_checkpoint

        write_checkpoint(placeholder, "tiny", seed=PLACEHOLDER_SEED)
    logger.warning(
        "no trained embedded model is shipped yet: loading an UNTRAINED placeholder checkpoint "
        "(%s) whose answers are gibberish; %s", placeholder, REAL_WEIGHTS_HINT)
    return placeholder


def _cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "step-realtime"
