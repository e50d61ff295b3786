"""The engine benchmark's smoke run: it runs end to end and writes well-formed results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[3]
SMOKE_RUN_LIMIT_S = 120  # the quick run takes seconds; this only stops a hang


def test_quick_benchmark_writes_results(tmp_path):
    output = tmp_path / "engine.json"
    subprocess.run(
        [sys.executable, "-m", "benchmarks.engine", "--quick", "--output", str(output)],
        cwd=REPOSITORY,
        check=True,
        capture_output=True,
        timeout=SMOKE_RUN_LIMIT_S,
    )
    results = json.loads(output.read_text())
    assert results["quick"] is True
    assert [row["tokens"] for row in results["prefill"]] == [83, 333]
    assert [row["batch"] for row in results["decode"]] == [1, 4, 16]
    for row in results["decode"]:
        assert row["engine_tokens_per_s"] > 0
        assert row["generate_tokens_per_s"] > 0
    assert results["threads"] >= 1
