"""What every session needs, loaded or checked before the server takes its first session.

A part that is missing stops the server with one `StartupError`, whose message says what to
install or pass (`step-realtime serve` prints it as `error: ...` and exits 1); where a part has
a defined fallback, its absence is logged once at start-up instead:

- The speech classifier of turn detection (`--vad`): a classifier is made and classifies one
  frame, so that Silero's model is loaded (one onnxruntime session per process). Missing (the
  silero-vad package, a dependency, was removed): StartupError, which names `--vad webrtc`.
- semantic_vad's end-of-turn model (Smart Turn, from the `semantic` extra): loaded where it is
  installed. With `--turn-detection semantic_vad` its absence is a StartupError; otherwise it
  is logged once, new sessions keep server_vad, and a session asking for semantic_vad gets an
  `unsupported_feature` error event (`SessionLimits.semantic_vad_missing`).
- The default voice (`--default-voice`) must be one of the responder's voices.

The responder's own parts are loaded before this runs (`server.cli.open_model`: the checkpoint
and its tokenizer, the TTS backend and its voices, each a clear `error:` when missing) and warmed
up in the background once the server listens (`Responder.warm_up`: the engine, and a word
through the TTS voice); `/readyz` answers 503 until that is done, and a failed warm-up stops
`serve` with exit status 1 (server/app.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from server.settings import Settings
from server.turn_work import EndOfTurnJudge
from streaming.turns import end_of_turn
from streaming.turns.vad import make_classifier

log = logging.getLogger("server.startup")

WEBRTC_HINT = "or serve with --vad webrtc, which needs no model file"


class StartupError(Exception):
    """A part every session needs is missing or broken; the message says what to do."""


@dataclass
class TurnModels:
    """Turn detection's models, shared by every session of the server."""

    judge: EndOfTurnJudge  # semantic_vad's end-of-turn model, run off the event loop
    semantic_vad_missing: str | None = None  # why semantic_vad cannot run here; None: it can


def load_turn_models(settings: Settings) -> TurnModels:
    """Load (or find missing) what turn detection needs; StartupError where the server cannot
    serve its settings."""
    try:
        classifier = make_classifier(settings.vad)
        classifier.probability(np.zeros(classifier.frame_samples, np.int16))
    except FileNotFoundError as error:
        raise StartupError(f"{error}; {WEBRTC_HINT}") from None
    except Exception as error:
        raise StartupError(
            f"the {settings.vad} VAD (--vad {settings.vad}) could not be loaded: {error}; "
            f"{WEBRTC_HINT}"
        ) from None
    judge = EndOfTurnJudge()
    missing = _load_end_of_turn(judge)
    if settings.turn_detection == "semantic_vad":
        if missing is not None:
            raise StartupError(f"--turn-detection semantic_vad: {missing}")
    elif missing is not None:
        log.warning(
            "%s; until then sessions get server_vad, and a session asking for semantic_vad "
            "gets an error event",
            missing,
        )
    return TurnModels(judge, missing)


def _load_end_of_turn(judge: EndOfTurnJudge) -> str | None:
    """Load the end-of-turn model and run it once; None, or why semantic_vad cannot run."""
    try:
        end_of_turn.smart_turn_model_path()
    except FileNotFoundError as error:
        return str(error)
    try:
        judge.warm_up()
    except Exception as error:
        return f"semantic_vad's end-of-turn model (Smart Turn) could not be loaded: {error}"
    return None


def check_default_voice(settings: Settings, voices: list[str]) -> None:
    """The default voice of new sessions must be one the responder speaks."""
    if settings.default_voice and voices and settings.default_voice not in voices:
        raise StartupError(
            f"--default-voice {settings.default_voice!r} is not one of this server's voices: "
            f"{', '.join(voices)}"
        )
