"""Which checkpoint to load when the user names none: the embedded default.

It is a small (2M-parameter) spoken-arithmetic model of the Step-Audio 2 / R1 architecture,
trained in this repository (`python -m streaming.arith.train`) and shipped inside the package in
the real checkpoint format, so it is loaded by exactly the code that loads the real weights.
"""

from __future__ import annotations

import logging
from pathlib import Path

from streaming.model.config import CheckpointError

logger = logging.getLogger(__name__)

SHIPPED_CHECKPOINT = Path(__file__).parent / "checkpoints" / "arith"
REAL_WEIGHTS_HINT = (
    "to serve Step-Audio-R1, download stepfun-ai/Step-Audio-R1 (or Step-Audio-2-mini) from "
    "Hugging Face and pass its directory with --model"
)


def default_checkpoint() -> Path:
    """The shipped checkpoint; a clear error if the installation lacks it."""
    if not (SHIPPED_CHECKPOINT / "config.json").is_file():
        raise CheckpointError(
            f"the embedded default model is missing from this installation "
            f"({SHIPPED_CHECKPOINT}); reinstall the package, or {REAL_WEIGHTS_HINT}"
        )
    logger.info(
        "loading the embedded default model (spoken arithmetic, 2M parameters) from %s; %s",
        SHIPPED_CHECKPOINT,
        REAL_WEIGHTS_HINT,
    )
    return SHIPPED_CHECKPOINT
