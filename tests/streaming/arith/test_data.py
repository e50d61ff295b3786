"""The spoken-arithmetic data generator: determinism, targets, held-out splits."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from streaming.arith import data, offtask
from streaming.arith.data import (
    Problem,
    all_problems,
    answer_number,
    augment_wave,
    held_out_voices,
    held_out_words,
    make_utterance,
    number_words,
    parse_number_words,
    phrasings,
    speak,
    speak_words,
    train_voices,
)
from streaming.arith.melcache import load_or_build, word_labels
from streaming.arith.words import SILENCE, word_id
from streaming.model.audio_encoder import audio_token_count


def test_targets_follow_r1_format() -> None:
    problem = Problem(7, "*", 6)
    assert problem.reasoning == "I hear: seven times six. 7 * 6 = 42."
    assert problem.answer == "Seven times six is forty two."
    assert Problem(56, "/", 8).answer == "Fifty six divided by eight is seven."
    assert answer_number(problem.answer) == 42


@pytest.mark.parametrize("n", range(0, 145))
def test_number_words_round_trip(n: int) -> None:
    assert parse_number_words(number_words(n)) == n


def test_problems_cover_the_task() -> None:
    problems = all_problems()
    assert all(p.result >= 0 for p in problems)
    assert all(p.a == p.result * p.b for p in problems if p.op == "/")
    assert max(p.a for p in problems if p.op == "+") == 20
    assert max(max(p.a, p.b) for p in problems if p.op == "*") == 12
    assert {p.op for p in problems} == {"+", "-", "*", "/"}


def test_held_out_voices_and_phrasings_are_disjoint_from_training() -> None:
    assert not set(train_voices()) & set(held_out_voices())
    for op in data.OPERATORS:
        assert not set(phrasings(op, held_out=False)) & set(phrasings(op, held_out=True))
    train = [make_utterance("train", i) for i in range(300)]
    assert {u.voice for u in train} <= set(train_voices())
    train_templates = {
        t.format(a="A", b="B") for op in data.OPERATORS for t in phrasings(op, held_out=False)
    }
    evaluation = [make_utterance("eval", i) for i in range(60)]
    for u in evaluation:
        assert u.held_out_voice or u.held_out_phrasing
        assert (u.voice in held_out_voices()) == u.held_out_voice
    assert {u.text for u in evaluation if u.held_out_phrasing}.isdisjoint({u.text for u in train})
    # Every training text is a training template, maybe between fillers, and has no word that
    # only a held-out carrier uses.
    fillers = {"prefix": 0, "suffix": 0, "other words": 0}
    for u in train:
        words = [number_words(u.problem.a), number_words(u.problem.b)]
        texts = {t.replace("A", words[0]).replace("B", words[1]) for t in train_templates}
        allowed = {
            " ".join(filter(None, (p, t, x))): (bool(p), bool(x))
            for t in texts
            for p in ("", *data.TRAIN_PREFIXES)
            for x in ("", *data.TRAIN_SUFFIXES)
        }
        core, others = _without_other_words(u.text)
        assert core in allowed, u.text
        prefixed, suffixed = allowed[core]
        fillers["prefix"] += prefixed
        fillers["suffix"] += suffixed
        fillers["other words"] += others
        assert not set(u.text.lower().split()) & held_out_words(), u.text
    assert fillers["prefix"] > 60 and fillers["suffix"] > 30 and fillers["other words"] > 25
    assert held_out_words() == {"how", "much", "can", "work", "out", "when"}


def _without_other_words(text: str) -> tuple[str, int]:
    """The text without the off-task words around it (`data.OTHER_WORDS`), and how many."""
    words = text.split()
    start, end = 0, len(words)
    while start < end and words[start] in data.OTHER_WORDS:
        start += 1
    while end > start and words[end - 1] in data.OTHER_WORDS:
        end -= 1
    return " ".join(words[start:end]), len(words) - (end - start)


def test_utterances_are_deterministic() -> None:
    first = [make_utterance("train", i, seed=5) for i in range(20)]
    assert first == [make_utterance("train", i, seed=5) for i in range(20)]
    assert first != [make_utterance("train", i, seed=6) for i in range(20)]
    wave = speak(first[0], seed=5, augment=False)
    assert wave.dtype == np.float32 and 0.3 < len(wave) / 16_000 < 8
    rng = lambda: np.random.default_rng(1)  # noqa: E731
    np.testing.assert_array_equal(augment_wave(wave, rng())[0], augment_wave(wave, rng())[0])
    assert not np.array_equal(
        augment_wave(wave, rng())[0], augment_wave(wave, np.random.default_rng(2))[0]
    )


def test_mel_cache_is_the_same_whatever_the_workers(tmp_path: Path) -> None:
    one = load_or_build(tmp_path / "one", "dev", 6, seed=3, workers=1, items_per_task=2)
    two = load_or_build(tmp_path / "two", "dev", 6, seed=3, workers=2, items_per_task=2)
    np.testing.assert_array_equal(one.offsets, two.offsets)
    np.testing.assert_array_equal(one.frames, two.frames)
    np.testing.assert_array_equal(one.labels, two.labels)
    assert one.mel(0).shape == (128, one.length(0))
    assert len(one.word_labels(0)) == audio_token_count(one.length(0))
    again = load_or_build(tmp_path / "one", "dev", 6, seed=3)  # read back, not rebuilt
    np.testing.assert_array_equal(again.frames, one.frames)


def test_word_labels_follow_the_word_timings() -> None:
    u = make_utterance("train", 0)
    wave, words = speak_words(u, augment=False)
    assert [w.word for w in words] == u.text.split()
    assert all(a.end_s <= b.start_s + 1e-6 for a, b in zip(words, words[1:], strict=False))
    labels = word_labels(words, 30)
    assert labels[0] == SILENCE or words[0].start_s < 0.04
    centre = (words[1].start_s + words[1].end_s) / 2
    assert labels[int(centre / 0.08)] == word_id(words[1].word) != SILENCE


def test_declined_kinds_are_deterministic_and_leave_questions_alone() -> None:
    for kind in data.DECLINED_KINDS:
        first = [data.make_item("train", kind, i, seed=4) for i in range(10)]
        assert first == [data.make_item("train", kind, i, seed=4) for i in range(10)]
        assert all(u.kind == kind and u.declined and u.answer == data.REJECTION for u in first)
        with pytest.raises(ValueError, match="asks no question"):
            _ = first[0].question
    assert data.make_item("train", "question", 3) == make_utterance("train", 3)
    with pytest.raises(ValueError, match="unknown kind"):
        data.make_item("train", "song", 0)


def test_truncated_questions_stop_before_their_last_operand() -> None:
    for i in range(6):
        u = data.make_item("train", "truncated", i)
        wave, words = speak_words(u, augment=False)
        whole, whole_words = speak_words(dataclasses.replace(u, kind="question"), augment=False)
        last_number = [w for w in whole_words if parse_number_words(w.word) is not None][-1]
        assert len(wave) / 16_000 <= last_number.start_s + 1e-3
        assert len(wave) < len(whole)
        assert all(w.word in whole_words_text(whole_words) or w.word == data.PARTIAL for w in words)
        assert u.transcript is None


def whole_words_text(words: list) -> set[str]:
    return {w.word for w in words}


def test_fragments_silence_and_noise() -> None:
    for i in range(4):
        fragment = data.make_item("train", "fragment", i)
        wave, words = speak_words(fragment, augment=False)
        assert data.FRAGMENT_S[0] - 0.01 <= len(wave) / 16_000 <= data.FRAGMENT_S[1] + 0.01
        assert all(w.word == data.PARTIAL for w in words)
    levels = {}
    for kind in ("silence", "noise"):
        u = data.make_item("eval", kind, 1)
        wave, words = speak_words(u, augment=False)
        assert words == [] and u.text == "" and u.transcript == ""
        assert abs(len(wave) / 16_000 - u.duration_s) < 0.01
        levels[kind] = float(np.sqrt(np.mean(wave**2)))
    assert levels["silence"] < 10 ** (data.SILENCE_DBFS[1] / 20) + 1e-6
    assert levels["noise"] > 10 ** (data.NOISE_DBFS[0] / 20) * 0.9


def test_off_task_sentences_are_held_out_and_never_cue_on_unknown_words() -> None:
    train = offtask.all_train_sentences()
    assert "what is the capital of france" not in train
    evaluation = [data.make_item("eval", "offtask", i) for i in range(80)]
    assert {u.text for u in evaluation}.isdisjoint(train)
    assert any(u.text == "what is the capital of france" for u in evaluation) or any(
        "capital of" in u.text for u in evaluation
    )
    for text in train:
        assert not set(text.split()) & held_out_words(), text
    for i in range(200):
        u = data.make_item("train", "offtask", i)
        assert not set(u.text.lower().split()) & held_out_words(), u.text
        assert u.voice in train_voices()


def test_transcripts_are_the_words_spoken() -> None:
    u = make_utterance("train", 1)
    assert u.transcript == u.text.lower()
    assert all(ch.isalpha() or ch in " '" for ch in u.transcript)
