"""The models the tests load, each loaded one way wherever it is used, and the tool they declare."""

from __future__ import annotations

from pathlib import Path

import torch

from streaming.default_model import SHIPPED_CHECKPOINT
from streaming.model.checkpoint import LoadedModel, load_checkpoint
from streaming.responder import Responder


def float32_model(checkpoint: Path) -> LoadedModel:
    """A checkpoint (bf16 on disk) loaded in float32, as the CPU tests compute."""
    return load_checkpoint(checkpoint, dtype=torch.float32)


def shipped_responder() -> Responder:
    """The shipped embedded model behind the server, on the CPU, for up to four sessions."""
    from streaming.pipeline import load_responder  # here: the model tests need no serving side

    return load_responder(SHIPPED_CHECKPOINT, device="cpu", dtype="float32", max_sequences=4)


# The function tool the protocol tests declare (a session's tools, as clients send them).
CALCULATE = {
    "type": "function",
    "name": "calculate",
    "description": "Evaluate an arithmetic expression",
    "parameters": {
        "type": "object",
        "properties": {"expression": {"type": "string"}},
        "required": ["expression"],
    },
}
