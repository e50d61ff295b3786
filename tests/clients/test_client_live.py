"""The playback side of a live conversation, without devices: what was played of which
reply, and a stop that silences at once and ignores the reply's late audio."""

from __future__ import annotations

import numpy as np

from step_realtime_client.audio import WIRE_SAMPLE_RATE
from step_realtime_client.live import PlaybackBuffer, SimulatedPlayer

MS = WIRE_SAMPLE_RATE // 1000


def tone(ms: int, value: int = 1000) -> np.ndarray:
    return np.full(ms * MS, value, dtype=np.int16)


def test_the_device_gets_the_audio_in_order_then_silence() -> None:
    buffer = PlaybackBuffer()
    buffer.play("a", tone(10, 1))
    buffer.play("a", tone(10, 2))
    out = np.full(30 * MS, -1, dtype=np.int16)
    assert buffer.fill(out) == 20 * MS
    assert (out[: 10 * MS] == 1).all() and (out[10 * MS : 20 * MS] == 2).all()
    assert (out[20 * MS :] == 0).all()


def test_stop_reports_what_was_played_and_drops_the_rest() -> None:
    buffer = PlaybackBuffer()
    buffer.play("a", tone(100))
    buffer.fill(np.zeros(30 * MS, np.int16))
    assert buffer.stop() == ("a", 30)
    out = np.ones(10 * MS, np.int16)
    assert buffer.fill(out) == 0 and not out.any()  # silent at once
    buffer.play("a", tone(50))  # late audio of the cancelled reply
    assert buffer.fill(np.zeros(10 * MS, np.int16)) == 0
    assert buffer.stop() is None


def test_a_starved_reply_still_counts_as_playing_until_its_audio_is_done() -> None:
    buffer = PlaybackBuffer()
    buffer.play("a", tone(20))
    buffer.fill(np.zeros(40 * MS, np.int16))  # played it all; more is on its way
    assert buffer.stop() == ("a", 20)
    buffer.play("b", tone(20))
    buffer.finish("b")
    buffer.fill(np.zeros(40 * MS, np.int16))
    assert buffer.stop() is None  # b played to its end: nothing to interrupt


def test_played_time_is_counted_per_reply() -> None:
    buffer = PlaybackBuffer()
    buffer.play("a", tone(20))
    buffer.finish("a")
    buffer.play("b", tone(50))
    buffer.fill(np.zeros(30 * MS, np.int16))  # all of a, 10 ms of b
    assert buffer.stop() == ("b", 10)


def test_the_simulated_player_follows_the_clock() -> None:
    now = [100.0]
    player = SimulatedPlayer(clock=lambda: now[0])
    player.play("a", tone(500))
    now[0] += 0.2
    assert player.played_ms() == 200
    now[0] += 1.0
    assert player.played_ms() == 500  # never more than arrived
    assert player.stop() == ("a", 500)  # not finished: still playing (starved)
    player.play("a", tone(100))
    assert player.stop() is None  # late audio of a stopped reply is ignored
