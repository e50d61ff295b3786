"""What a session counts for the metrics (the connection reads the growth after each call)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SessionStats:
    audio_in_ms: float = 0.0
    audio_out_ms: float = 0.0
    speech_heard_ms: float = 0.0  # audio inside turns that voice activity detection found
