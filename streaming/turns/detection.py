"""What a session asks of turn detection: OpenAI's `server_vad` and `semantic_vad` settings.

`server_vad` ends a turn after `silence_duration_ms` of silence. `semantic_vad` ends it when the
end-of-turn model (Smart Turn, `streaming.turns.end_of_turn`) says the utterance is complete;
`eagerness` says how soon it asks, how sure the model must be, and the longest silence it waits
through when the model says "not yet" (OpenAI caps low / medium / high at 8 / 4 / 2 s; `auto` is
medium). Its speech/silence frames come from the same classifier as `server_vad`'s, at the
default threshold and prefix padding (OpenAI's `semantic_vad` has neither field).

`merge_window_ms` is this server's extension to both: speech that starts within that long after
a detector closed a turn continues that turn (the pause was inside the utterance), so the reply
begun for it is withdrawn and one reply answers the whole. A reply can have played for at most
this long when a merge withdraws it; speech after the window is a turn of its own (a barge-in if
a reply is playing). 0 turns merging off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Eagerness = Literal["low", "medium", "high", "auto"]
EAGERNESS_VALUES: tuple[Eagerness, ...] = ("low", "medium", "high", "auto")
DEFAULT_MERGE_WINDOW_MS = 1000


@dataclass(frozen=True)
class ServerVad:
    """`turn_detection: {"type": "server_vad", ...}` with OpenAI's defaults."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    create_response: bool = True
    interrupt_response: bool = True
    idle_timeout_ms: int | None = None
    merge_window_ms: int = DEFAULT_MERGE_WINDOW_MS

    @property
    def type(self) -> str:
        return "server_vad"


@dataclass(frozen=True)
class SemanticVad:
    """`turn_detection: {"type": "semantic_vad", ...}` with OpenAI's defaults."""

    eagerness: Eagerness = "auto"
    create_response: bool = True
    interrupt_response: bool = True
    threshold: float = 0.5  # the frame classifier's; not an OpenAI field of semantic_vad
    prefix_padding_ms: int = 300  # likewise
    merge_window_ms: int = DEFAULT_MERGE_WINDOW_MS

    @property
    def type(self) -> str:
        return "semantic_vad"

    @property
    def policy(self) -> EndOfTurnPolicy:
        return EAGERNESS[self.eagerness]


TurnDetection = ServerVad | SemanticVad


@dataclass(frozen=True)
class EndOfTurnPolicy:
    """When `semantic_vad` asks the end-of-turn model, and what it does with the answer."""

    first_check_ms: int  # silence after speech before the model is first asked
    recheck_every_ms: int  # asked again this often while it says "not yet"
    complete_probability: float  # the model's probability at or above which the turn ends
    max_silence_ms: int  # the turn ends after this much silence whatever the model says


# Checks fall on whole VAD frames (30 ms webrtc, 32 ms Silero). The first check waits for two to
# five frames of silence: webrtcvad and Silero both hold "speech" a frame or two past the last
# word, and Smart Turn judges the audio it is given, trailing silence included.
EAGERNESS: dict[Eagerness, EndOfTurnPolicy] = {
    "high": EndOfTurnPolicy(
        first_check_ms=60, recheck_every_ms=200, complete_probability=0.3, max_silence_ms=2000
    ),
    "medium": EndOfTurnPolicy(
        first_check_ms=90, recheck_every_ms=300, complete_probability=0.5, max_silence_ms=4000
    ),
    "low": EndOfTurnPolicy(
        first_check_ms=150, recheck_every_ms=400, complete_probability=0.7, max_silence_ms=8000
    ),
}
EAGERNESS["auto"] = EAGERNESS["medium"]
