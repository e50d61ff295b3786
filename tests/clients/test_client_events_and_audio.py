"""The client's pure parts: event parsing (GA and beta names), playback underruns, the end of
speech in a recording."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from step_realtime_client.audio import WIRE_SAMPLE_RATE, silence, speech_end, to_wire
from step_realtime_client.events import (
    AudioDelta,
    ErrorEvent,
    ReasoningDelta,
    ResponseDone,
    ServerEvent,
    TranscriptDelta,
    parse_event,
)
from step_realtime_client.reply import playback_underruns
from tests.clients.harness import client_speech


@pytest.mark.parametrize("name", ["response.output_audio.delta", "response.audio.delta"])
def test_audio_deltas_parse_under_ga_and_beta_names(name: str) -> None:
    pcm = np.array([0, 1000, -1000, 32767], dtype=np.int16)
    data = {
        "type": name,
        "event_id": "e1",
        "response_id": "r1",
        "item_id": "i1",
        "output_index": 0,
        "content_index": 0,
        "delta": base64.b64encode(pcm.tobytes()).decode(),
    }
    event = parse_event(data)
    assert isinstance(event, AudioDelta) and event.type == name
    assert event.response_id == "r1" and event.item_id == "i1"
    np.testing.assert_array_equal(event.pcm16(), pcm)


def test_text_events_and_their_kinds() -> None:
    base = {"response_id": "r", "item_id": "i", "delta": "x"}
    reasoning = parse_event({"type": "response.reasoning_text.delta", **base})
    assert isinstance(reasoning, ReasoningDelta)
    transcript = parse_event({"type": "response.audio_transcript.delta", **base})
    assert isinstance(transcript, TranscriptDelta) and not isinstance(transcript, ReasoningDelta)


def test_response_done_error_and_unknown_events() -> None:
    done = parse_event(
        {
            "type": "response.done",
            "response": {
                "id": "r",
                "status": "cancelled",
                "status_details": {"reason": "turn_detected"},
                "stage_seconds": {"prefill": 0.1},
            },
        }
    )
    assert isinstance(done, ResponseDone)
    assert (done.response_id, done.status, done.stage_seconds) == (
        "r",
        "cancelled",
        {"prefill": 0.1},
    )
    error = parse_event(
        {"type": "error", "error": {"code": "invalid_json", "message": "bad", "event_id": "c7"}}
    )
    assert isinstance(error, ErrorEvent)
    assert (error.code, error.client_event_id) == ("invalid_json", "c7")
    other = parse_event({"type": "rate_limits.updated", "rate_limits": []})
    assert type(other) is ServerEvent and other.raw["rate_limits"] == []


def test_underruns_are_the_gaps_real_time_playback_would_hear() -> None:
    second = WIRE_SAMPLE_RATE
    # 1 s of audio at t=0, the next 1 s at t=1.5: playback starves from 1.0 to 1.5
    gaps = playback_underruns([(0.0, second), (1.5, second), (2.0, second)])
    assert len(gaps) == 1
    assert gaps[0].at_s == pytest.approx(1.0) and gaps[0].gap_s == pytest.approx(0.5)
    # audio arriving faster than real time never starves; a prebuffer absorbs a late chunk
    assert playback_underruns([(0.0, second), (0.1, second), (0.2, second)]) == []
    assert playback_underruns([(0.0, second), (1.4, second)], prebuffer_s=0.5) == []


def test_speech_end_finds_where_a_spoken_question_stops() -> None:
    speech = client_speech("What is seven times six?")
    loud = np.flatnonzero(np.abs(speech) > 1000)[-1]  # the last clearly audible sample
    end = speech_end(np.concatenate([speech, silence(700)]))
    assert loud - WIRE_SAMPLE_RATE // 10 <= end <= loud + WIRE_SAMPLE_RATE // 10  # 100 ms
    assert speech_end(silence(500)) == 0


def test_speech_end_ignores_quiet_noise_after_speech() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(WIRE_SAMPLE_RATE) / WIRE_SAMPLE_RATE
    tone = (np.sin(2 * np.pi * 300 * t) * 16000).astype(np.int16)  # 1 s, -6 dBFS
    hiss = rng.normal(0, 30, WIRE_SAMPLE_RATE // 2).astype(np.int16)  # -60 dBFS room noise
    end = speech_end(np.concatenate([tone, hiss]))
    assert end == WIRE_SAMPLE_RATE


def test_to_wire_accepts_float_stereo_at_any_rate() -> None:
    rate = 16_000
    t = np.arange(rate) / rate
    stereo = np.stack([np.sin(2 * np.pi * 440 * t)] * 2, axis=1) * 0.5
    pcm = to_wire(stereo, rate)
    assert pcm.dtype == np.int16 and len(pcm) == WIRE_SAMPLE_RATE
    assert 15000 < np.abs(pcm).max() < 17000
