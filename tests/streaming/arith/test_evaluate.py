"""The evaluation script on a tiny trained checkpoint: a table, and JSON with every wrong reply."""

import json
from pathlib import Path

import pytest

from streaming.arith.evaluate import main, split_reply


def test_split_reply() -> None:
    text = "I hear: two plus two. 2 + 2 = 4.\n</think>\nTwo plus two is four."
    assert split_reply(text) == ("I hear: two plus two. 2 + 2 = 4.", "Two plus two is four.")
    assert split_reply("I hear: two") == ("I hear: two", "")


def test_evaluation_writes_results(
    tiny_run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "arith_eval.json"
    main(["--model", str(tiny_run.checkpoint), "--items", "3", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["items"] == 3
    accuracy = result["accuracy"]
    assert set(accuracy) >= {"acc_think", "acc_no_think"}
    wrong = {
        "think": 3 * (1 - accuracy["acc_think"]),
        "no_think": 3 * (1 - accuracy["acc_no_think"]),
    }
    for mode, count in wrong.items():
        assert sum(w["mode"] == mode for w in result["wrong"]) == round(count)
    assert "no_think" in capsys.readouterr().out
