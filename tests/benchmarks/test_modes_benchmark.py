"""The modes benchmark's smoke run: two servers (speculation off and on), espeak-ng speech."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
SMOKE_RUN_LIMIT_S = 300  # the run takes well under a minute; this only stops a hang


def test_quick_run_reports_every_requested_mode_against_the_baseline(tmp_path):
    out = tmp_path / "modes.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.modes",
            "--quick",
            "--size",
            "tiny",
            "--dtype",
            "float32",
            "--modes",
            "no_think",
            "--reasoning-tokens",
            "16",
            "--out",
            str(out),
        ],
        cwd=REPOSITORY,
        check=True,
        capture_output=True,
        timeout=SMOKE_RUN_LIMIT_S,
    )
    report = json.loads(out.read_text())
    assert report["config"]["speculation_ceiling_s"] == 0.45  # 60 ms trigger, 510 ms window
    for setting in ("speculation_off", "speculation_on"):
        results = report[setting]
        assert list(results) == ["think_then_speak", "no_think"]
        baseline, no_think = results["think_then_speak"], results["no_think"]
        assert baseline["p50_ratio_to_baseline"] == 1.0
        assert len(no_think["first_packet_s"]) == 2 and min(no_think["first_packet_s"]) > 0
        assert no_think["reasoning_tokens_mean"] == 0
        assert 0 < baseline["reasoning_tokens_mean"] <= 16
        assert {"encode", "prefill", "first_answer_token", "first_tts_chunk", "server"} <= set(
            no_think["server_stage_mean_s"]
        )
        assert "first_reasoning_token" not in no_think["server_stage_mean_s"]
    savings = report["speculation_savings"]
    assert set(savings) == {"think_then_speak", "no_think"}
    for saved in savings.values():
        assert saved["head_start_s"] >= 0 and "server_saved_s" in saved
    assert out.with_suffix(".png").read_bytes().startswith(b"\x89PNG")
