"""Speech out: answer text to 24 kHz speech, streamed (see `tts.base`)."""

from __future__ import annotations

from typing import Any

from tts.base import TTSBackend

BACKENDS = ("espeak", "kokoro")


def get_backend(name: str = "espeak", **options: Any) -> TTSBackend:
    """A backend by name: `espeak` (default, always available) or `kokoro` (an extra)."""
    if name == "espeak":
        from tts.espeak_backend import EspeakBackend

        return EspeakBackend(**options)
    if name == "kokoro":
        from tts.kokoro_backend import KokoroBackend

        return KokoroBackend(**options)
    raise ValueError(f"unknown TTS backend {name!r}; valid backends: {', '.join(BACKENDS)}")
