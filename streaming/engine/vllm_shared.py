"""What the in-process and the remote vLLM engines share, without importing vLLM: its finish
reasons as ours, and a prompt's audio positions as the runs its multimodal items hold."""

from __future__ import annotations

from streaming.engine.base import FinishReason

FINISH_REASONS = {
    "stop": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "abort": FinishReason.CANCELLED,
    "error": FinishReason.ERROR,
}


def audio_runs(positions: list[int]) -> list[tuple[int, int]]:
    """(start, length) of each run of consecutive positions."""
    runs: list[tuple[int, int]] = []
    for position in positions:
        if runs and position == runs[-1][0] + runs[-1][1]:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((position, 1))
    return runs
