"""The evaluation script on a tiny trained checkpoint: a table, and JSON with every wrong reply."""

import json
from pathlib import Path

import pytest

from streaming.arith.data import REJECTION
from streaming.arith.evaluate import (
    main,
    split_reply,
    spoken_part,
    word_error_rate,
    word_errors,
)


def test_split_reply() -> None:
    text = "I hear: two plus two. 2 + 2 = 4.\n</think>\nTwo plus two is four."
    assert split_reply(text) == ("I hear: two plus two. 2 + 2 = 4.", "Two plus two is four.")
    assert split_reply("I hear: two") == ("I hear: two", "")
    call = '<tool_call>function\ncalculate\n{"expression": "2 + 2"}</tool_call>'
    assert spoken_part(call) == ""
    assert spoken_part(REJECTION) == REJECTION


def test_word_error_rate() -> None:
    assert word_errors("what is seven times six", "what is seven times six") == 0
    assert word_errors("what is seven times six", "what is seven six") == 1  # deletion
    assert word_errors("seven times six", "eleven times six please") == 2  # sub + insertion
    assert word_errors("", "noise") == 1
    assert word_error_rate([("a b c d", "a x c d"), ("e f", "e f")]) == round(1 / 6, 4)


def test_evaluation_writes_results(
    tiny_run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "arith_eval.json"
    main(
        ["--model", str(tiny_run.checkpoint), "--items", "3", "--sessions", "1", "--out", str(out)]
    )
    result = json.loads(out.read_text())
    assert result["items"] == 3
    accuracy = result["accuracy"]
    assert set(accuracy) >= {"acc_think", "acc_no_think", "false_rejection"}
    other_suites = {"position", "system", "tools", "expected_call", "tool_value", "transcribe"}
    for mode in ("think", "no_think"):
        single_wrong = [
            w
            for w in result["wrong"]
            if w.get("mode") == mode and w["clip"] == "question" and not set(w) & other_suites
        ]
        assert len(single_wrong) == round(3 * (1 - accuracy[f"acc_{mode}"]))
    assert set(result["sessions"]) >= {"acc_1-5", "acc_6-10", "acc_11-20"}
    assert set(result["transcription"]) == {
        "wer/held-out voice",
        "wer/held-out phrasing",
        "wer/both held out",
    }
    assert set(result["tools"]) >= {"tool_call_right", "tool_result_spoken"}
    assert set(result["rejection"]) == {
        "offtask",
        "truncated",
        "fragment",
        "silence",
        "noise",
        "all",
    }
    assert 0 <= result["system_prompt"]["acc_think"] <= 1
    printed = capsys.readouterr().out
    assert "no_think" in printed and "declined: offtask" in printed
