"""Which embedded checkpoint ships, for the tests that need the retrained one.

The retrained embedded model (`python -m streaming.arith.train`) transcribes, calls a declared
tool and declines off-task speech; the checkpoint of the first release does none of these. Its
config.json lacks `max_history_turns`, which every retrained checkpoint carries. Until the
retrained checkpoint ships, the tests of those abilities are expected failures, strictly: the
day it ships they must pass, and these marks go.
"""

import json

import pytest

from streaming.default_model import SHIPPED_CHECKPOINT


def is_retrained() -> bool:
    config = json.loads((SHIPPED_CHECKPOINT / "config.json").read_text())
    return "max_history_turns" in config


NEEDS_RETRAINED_MODEL = pytest.mark.xfail(
    not is_retrained(),
    strict=True,
    reason="the shipped embedded checkpoint predates training for transcription, tool calls "
    "and rejection; retrain with `python -m streaming.arith.train`",
)
