"""Turn-taking without sockets: real espeak-ng speech in, turn events out, on both classifiers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import soxr

from streaming.turns.detection import EAGERNESS, SemanticVad, ServerVad
from streaming.turns.machine import (
    TRANSITIONS,
    AskEndOfTurn,
    Cue,
    IdleTimeout,
    Prepare,
    Resumed,
    Speculate,
    SpeechStarted,
    SpeechStopped,
    TurnCommitted,
    TurnState,
    TurnTaking,
    TurnTakingError,
)
from tts.espeak import synthesize

RATE = 16_000
VADS = ("webrtc", "silero")


def silence(ms: int) -> np.ndarray:
    return np.zeros(RATE * ms // 1000, np.int16)


def speech(text: str) -> np.ndarray:
    pcm, native, _ = synthesize(text)
    return soxr.resample(pcm, native, RATE).astype(np.int16)


def machine(detection, vad="webrtc", **kwargs) -> TurnTaking:
    ids = (f"item_{n}" for n in itertools.count())
    return TurnTaking(detection, lambda: next(ids), vad=vad, **kwargs)


def feed(turns: TurnTaking, pcm: np.ndarray, ms: int = 20) -> list:
    step = RATE * ms // 1000
    events = []
    for i in range(0, len(pcm), step):
        events += turns.append(pcm[i : i + step])
    return events


def kinds(events) -> list[type]:
    return [type(e) for e in events]


def test_every_state_can_be_reached_and_left():
    reached = {after for after in TRANSITIONS.values()}
    left = {state for state, _ in TRANSITIONS}
    assert reached == set(TurnState) == left


def test_a_cue_outside_the_table_is_a_bug_not_a_state_change():
    turns = machine(ServerVad())
    with pytest.raises(TurnTakingError, match="not allowed in state 'listening'"):
        turns._cue(Cue.COMPLETE)
    assert turns.state == TurnState.LISTENING


@pytest.mark.parametrize("vad", VADS)
def test_silence_and_noise_floor_give_no_events(vad):
    rng = np.random.default_rng(0)
    hiss = (rng.normal(0, 30, RATE * 2)).astype(np.int16)
    assert feed(machine(ServerVad(), vad), np.concatenate([silence(1000), hiss])) == []


@pytest.mark.parametrize("vad", VADS)
def test_one_utterance_is_one_turn_with_its_padding_and_silence(vad):
    lead_ms = 500
    question = speech("what is seven times six")
    pcm = np.concatenate([silence(lead_ms), question, silence(1000)])
    turns = machine(ServerVad(prefix_padding_ms=300, silence_duration_ms=500), vad)
    events = feed(turns, pcm)
    assert kinds(events) == [SpeechStarted, SpeechStopped, TurnCommitted]
    started, stopped, committed = events
    assert started.item_id == stopped.item_id == committed.item_id == "item_0"
    assert lead_ms - 300 - 150 <= started.audio_start_ms <= lead_ms - 300 + 150
    audible = np.flatnonzero(np.abs(question.astype(np.int32)) > 300)
    speech_end_ms = (lead_ms * RATE // 1000 + audible[-1]) * 1000 // RATE
    assert stopped.audio_end_ms - speech_end_ms >= 500  # the silence window is in the turn
    assert len(committed.audio) == (stopped.audio_end_ms - started.audio_start_ms) * 16
    assert committed.by == "server_vad" and turns.item_id == "item_1"
    assert turns.state == TurnState.LISTENING


def test_a_short_pause_stays_one_turn_a_long_one_makes_two():
    word = speech("seven")
    config = ServerVad(silence_duration_ms=1000)
    one = feed(
        machine(config), np.concatenate([silence(300), word, silence(100), word, silence(1500)])
    )
    two = feed(
        machine(config), np.concatenate([silence(300), word, silence(2000), word, silence(1500)])
    )
    assert kinds(one).count(TurnCommitted) == 1
    assert kinds(two).count(TurnCommitted) == 2


def test_a_pause_speculates_and_speech_that_resumes_voids_the_guess():
    word = speech("seventeen")
    turns = machine(ServerVad(silence_duration_ms=800), speculate_after_ms=60)
    events = feed(turns, np.concatenate([silence(300), word, silence(300), word, silence(1200)]))
    assert kinds(events) == [
        SpeechStarted, Speculate, Resumed, Speculate, SpeechStopped, TurnCommitted,
    ]  # fmt: skip
    first, second = (e for e in events if isinstance(e, Speculate))
    assert len(first.audio) < len(second.audio) and first.item_id == second.item_id


def test_semantic_vad_commits_as_soon_as_the_model_says_complete():
    turns = machine(SemanticVad(eagerness="high"))
    events = feed(
        turns, np.concatenate([silence(300), speech("what is seven times six"), silence(100)])
    )
    assert kinds(events) == [SpeechStarted, AskEndOfTurn]
    assert turns.state == TurnState.JUDGING
    asked = events[-1]
    done = turns.verdict(asked.request_id, 0.9)
    assert kinds(done) == [SpeechStopped, TurnCommitted]
    assert done[1].by == "semantic_vad" and turns.state == TurnState.LISTENING
    assert turns.verdict(asked.request_id, 0.9) == []  # a late repeat changes nothing


def test_semantic_vad_waits_while_the_model_says_not_yet_then_caps_the_silence():
    detection = SemanticVad(eagerness="high")
    policy = EAGERNESS["high"]
    turns = machine(detection)
    events = feed(turns, np.concatenate([silence(300), speech("what is seventeen"), silence(100)]))
    asked = events[-1]
    assert turns.verdict(asked.request_id, 0.1) == [] and turns.state == TurnState.HOLDING
    later = feed(turns, silence(policy.recheck_every_ms + 60))
    assert kinds(later) == [AskEndOfTurn]  # asked again after more silence
    turns.verdict(later[0].request_id, 0.2)
    rest = feed(turns, silence(policy.max_silence_ms))
    assert kinds(rest)[-2:] == [SpeechStopped, TurnCommitted]
    assert rest[-1].by == "semantic_vad"


def test_a_verdict_that_comes_after_speech_resumed_is_ignored():
    turns = machine(SemanticVad(eagerness="high"))
    events = feed(turns, np.concatenate([silence(300), speech("seventeen"), silence(100)]))
    asked = events[-1]
    more = feed(turns, speech("minus eight"))
    assert Resumed not in kinds(more)  # nothing was speculated: no guess to void
    state = turns.state
    assert turns.verdict(asked.request_id, 0.99) == []  # about audio that no longer ends the turn
    assert turns.state == state and not turns.buffer.empty


def test_speech_soon_after_a_commit_counts_as_a_premature_commit():
    word = speech("seventeen")
    turns = machine(ServerVad(silence_duration_ms=200))
    feed(turns, np.concatenate([silence(300), word, silence(400), word, silence(600)]))
    assert turns.stats.premature_commits == 1
    feed(turns, np.concatenate([silence(2000), word, silence(600)]))
    assert turns.stats.premature_commits == 1


def test_idle_timeout_counts_audio_after_the_reply_has_played():
    turns = machine(ServerVad(idle_timeout_ms=1000))
    assert feed(turns, silence(3000)) == []  # no response yet: nothing to wait for
    turns.response_done(played_until_ms=turns.buffer.clock_ms + 500)
    assert feed(turns, silence(1400)) == []  # 500 ms still playing, then 900 ms of quiet
    events = feed(turns, silence(200))
    assert kinds(events) == [IdleTimeout, TurnCommitted]
    idle = events[0]
    assert idle.audio_end_ms - idle.audio_start_ms >= 1000
    assert events[1].by == "idle"


def test_a_long_turn_is_prepared_every_so_often():
    word = speech("seven plus eight")
    words = np.concatenate([np.concatenate([word, silence(100)]) for _ in range(6)])
    turns = machine(ServerVad(), prepare_every_ms=2000)
    events = feed(turns, np.concatenate([silence(300), words]))
    prepared = [e for e in events if isinstance(e, Prepare)]
    assert len(prepared) >= 2 and all(e.item_id == "item_0" for e in prepared)
    assert len(prepared[0].audio) < len(prepared[1].audio)


def test_manual_mode_commits_and_clears_only_when_told():
    turns = machine(None)
    assert feed(turns, np.concatenate([silence(200), speech("six"), silence(800)])) == []
    [committed] = turns.commit()
    assert committed.by == "client" and len(committed.audio) > RATE
    assert turns.buffer.empty and turns.state == TurnState.MANUAL
    feed(turns, silence(300))
    assert turns.clear() == [] and turns.buffer.empty


def test_new_settings_apply_to_the_audio_that_follows():
    turns = machine(ServerVad())
    feed(turns, np.concatenate([silence(300), speech("seven")]))
    assert turns.state in (TurnState.SPEAKING, TurnState.PAUSED)
    turns.configure(SemanticVad())
    assert turns.state == TurnState.LISTENING and not turns.buffer.empty


# --- merging a turn that was closed too early ----------------------------------------------


def _paused(first: str, second: str, pause_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """One question with a pause cut in, as its two pieces of audio (lead silence included)."""
    return np.concatenate([silence(300), speech(first)]), np.concatenate(
        [silence(pause_ms), speech(second), silence(800)]
    )


@pytest.mark.parametrize("vad", VADS)
def test_speech_soon_after_a_commit_continues_that_turn(vad):
    head, tail = _paused("what is nineteen", "minus eight", 700)
    turns = machine(ServerVad(silence_duration_ms=300), vad=vad)
    events = feed(turns, np.concatenate([head, tail]))
    assert kinds(events) == [
        SpeechStarted, SpeechStopped, TurnCommitted, SpeechStarted, SpeechStopped, TurnCommitted,
    ]  # fmt: skip
    started, _, early, again, _, whole = events
    assert again.merges == early.item_id and started.merges is None
    assert again.audio_start_ms == started.audio_start_ms  # the whole utterance's start
    assert whole.item_id == again.item_id != early.item_id
    # the early turn's audio, the pause and the rest: nothing lost, nothing twice
    assert np.array_equal(whole.audio[: len(early.audio)], early.audio)
    assert len(whole.audio) == (whole.previous_end_ms - started.audio_start_ms) * 16
    assert turns.stats.merges == 1 and turns.stats.premature_commits == 1


def test_speech_after_the_merge_window_is_a_turn_of_its_own():
    head, tail = _paused("what is nineteen", "minus eight", 1500)
    turns = machine(ServerVad(silence_duration_ms=300, merge_window_ms=1000))
    events = feed(turns, np.concatenate([head, tail]))
    started = [e for e in events if isinstance(e, SpeechStarted)]
    assert [e.merges for e in started] == [None, None]
    first, second = (e for e in events if isinstance(e, TurnCommitted))
    assert len(second.audio) < len(tail)  # its own speech and padding only
    assert turns.stats.merges == 0


@pytest.mark.parametrize("how", ["sealed", "window 0", "client commit"])
def test_a_sealed_turn_or_merging_off_or_a_client_commit_is_never_merged(how):
    head, tail = _paused("what is nineteen", "minus eight", 600)
    window = 0 if how == "window 0" else 1000
    turns = machine(ServerVad(silence_duration_ms=300, merge_window_ms=window))
    if how == "client commit":
        turns.configure(None)
        feed(turns, head)
        turns.commit()
        turns.configure(ServerVad(silence_duration_ms=300))
    else:
        feed(turns, np.concatenate([head, silence(400)]))
    if how == "sealed":
        turns.seal()  # the reply was heard, or the client changed the conversation
    events = feed(turns, tail)
    assert [e.merges for e in events if isinstance(e, SpeechStarted)] == [None]
    assert turns.stats.merges == 0


def test_a_merged_turn_speculates_on_the_whole_utterance():
    head, tail = _paused("what is nineteen", "minus eight", 700)
    turns = machine(ServerVad(silence_duration_ms=300), speculate_after_ms=100)
    events = feed(turns, np.concatenate([head, tail]))
    first_guess, *_, last_guess = (e for e in events if isinstance(e, Speculate))
    committed = [e for e in events if isinstance(e, TurnCommitted)]
    assert last_guess.item_id == committed[-1].item_id
    assert len(last_guess.audio) > len(committed[0].audio) > len(first_guess.audio) // 2
