"""The speculation-trigger benchmark: real webrtcvad over real espeak-ng questions."""

from __future__ import annotations

import json

from benchmarks import speculation
from server.settings import Settings
from streaming.turns.machine import whole_frames_ms


def test_false_starts_fall_and_savings_shrink_as_the_trigger_grows(tmp_path, capsys):
    out = tmp_path / "speculation.json"
    assert speculation.main(["--items", "8", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["config"]["committed_turns"] == 8  # every question ends in a commit
    rows = report["triggers"]
    assert [r["trigger_ms"] for r in rows] == list(speculation.TRIGGERS_MS)
    false_starts = [r["false_starts_per_turn"] for r in rows]
    saved = [r["most_saved_ms"] for r in rows]
    assert false_starts == sorted(false_starts, reverse=True)
    assert saved == sorted(saved, reverse=True)
    # The 500 ms window commits at the end of the 17th silent 30 ms frame.
    trigger = Settings().speculative_start_ms
    default = next(r for r in rows if r["trigger_ms"] == trigger)
    assert default["most_saved_ms"] == 510 - whole_frames_ms(trigger, 30)
    assert default["most_saved_fraction_of_window"] >= 0.8  # issue 5's target is reachable
    assert "false starts/turn" in capsys.readouterr().out
