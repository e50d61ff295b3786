"""The engine benchmark's smoke run: both engines, end to end, well-formed results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[3]
SMOKE_RUN_LIMIT_S = 600  # a vLLM start is most of it; this only stops a hang


def test_quick_benchmark_runs_both_engines_and_writes_results(tmp_path):
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
    assert results["engines"] == ["torch", "vllm"]
    assert [row["tokens"] for row in results["prefill"]] == [83, 333]
    assert [row["batch"] for row in results["decode"]] == [1, 4, 16, 32]
    for row in results["decode"]:
        assert row["torch_tokens_per_s"] > 0 and row["vllm_tokens_per_s"] > 0
        assert row["vllm_over_torch"] > 0
    assert results["fork"]["fork_first_token"]["vllm_ms"] > 0
    assert results["cancel"]["torch_ms"] >= 0 and results["cancel"]["vllm_ms"] >= 0
