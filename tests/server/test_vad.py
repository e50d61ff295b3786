"""server_vad on webrtcvad, fed with espeak-ng speech."""

from __future__ import annotations

import numpy as np
import pytest

from server.vad import (
    ServerVad,
    SpeechStarted,
    SpeechStopped,
    TurnDetector,
    aggressiveness,
    start_ratio,
)
from tests.server.helpers import spoken

RATE = 16_000


def feed_in_pieces(detector: TurnDetector, pcm: np.ndarray, ms: int = 20) -> list:
    step = RATE * ms // 1000
    events = []
    for i in range(0, len(pcm), step):
        events += detector.feed(pcm[i : i + step])
    return events


def test_threshold_mapping_is_monotonic_and_documented() -> None:
    assert [aggressiveness(t) for t in (0.0, 0.25, 0.5, 0.75, 1.0)] == [0, 1, 2, 3, 3]
    assert start_ratio(0.5) == pytest.approx(0.6)
    assert start_ratio(0.0) < start_ratio(1.0)


def test_silence_gives_no_events() -> None:
    assert feed_in_pieces(TurnDetector(ServerVad()), np.zeros(RATE * 2, np.int16)) == []


def test_one_utterance_gives_one_turn_with_padding_and_silence() -> None:
    lead_ms = 500
    pcm = spoken("what is seven times six", rate=RATE, lead_ms=lead_ms, tail_ms=1000)
    config = ServerVad(prefix_padding_ms=300, silence_duration_ms=500)
    events = feed_in_pieces(TurnDetector(config), pcm)
    assert [type(e) for e in events] == [SpeechStarted, SpeechStopped]
    started, stopped = events
    # speech begins at lead_ms; the reported start reaches back by the prefix padding
    assert lead_ms - 300 - 100 <= started.audio_start_ms <= lead_ms - 300 + 100
    assert stopped.audio_end_ms - stopped.last_voiced_ms >= 500
    assert stopped.audio_end_ms <= len(pcm) * 1000 // RATE


def test_short_pause_stays_one_turn_long_pause_makes_two() -> None:
    word = spoken("seven", rate=RATE, lead_ms=0, tail_ms=0)
    silence = lambda ms: np.zeros(RATE * ms // 1000, np.int16)  # noqa: E731
    config = ServerVad(silence_duration_ms=1000)
    one = feed_in_pieces(
        TurnDetector(config),
        np.concatenate([silence(300), word, silence(100), word, silence(1500)]),
    )
    two = feed_in_pieces(
        TurnDetector(config),
        np.concatenate([silence(300), word, silence(2000), word, silence(1500)]),
    )
    assert sum(isinstance(e, SpeechStopped) for e in one) == 1
    assert sum(isinstance(e, SpeechStopped) for e in two) == 2


def test_clock_offset_is_respected() -> None:
    pcm = spoken("six", rate=RATE, lead_ms=300)
    events = feed_in_pieces(TurnDetector(ServerVad(prefix_padding_ms=0), start_ms=10_000), pcm)
    assert events and events[0].audio_start_ms >= 10_000
