"""Shared fixtures for the whole test suite."""

from pathlib import Path

import pytest
import torch

from streaming.model.sizes import TINY
from streaming.model.writer import write_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight checkpoint in the real Step-Audio-R1 format, tiny sizes (read-only)."""
    path = tmp_path_factory.mktemp("tiny_checkpoint")
    # Small shards so that the sharded, indexed layout is exercised by every loader.
    return write_checkpoint(path, TINY, seed=0, shard_size=256 * 1024, dtype=torch.bfloat16)
