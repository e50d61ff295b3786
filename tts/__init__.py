"""Speech out: answer text to 24 kHz speech, streamed (see `tts.base`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tts.base import TTSBackend

BACKENDS = ("espeak", "piper")


def get_backend(
    name: str = "espeak", *, voice_path: str | Path | None = None, **options: Any
) -> TTSBackend:
    """A backend by name: `espeak` (default, always available) or `piper` (the `piper` extra).

    `voice_path`: a Piper voice (.onnx with its .onnx.json) or a folder of them; the default is
    every installed Piper voice package. `options` go to the backend (e.g. `max_workers`).
    """
    if name == "espeak":
        if voice_path is not None:
            raise ValueError("a voice path applies to the piper backend only (--tts-backend piper)")
        from tts.espeak_backend import EspeakBackend

        return EspeakBackend(**options)
    if name == "piper":
        from tts.piper_backend import PiperBackend

        return PiperBackend(voice_path, **options)
    raise ValueError(f"unknown TTS backend {name!r}; valid backends: {', '.join(BACKENDS)}")
