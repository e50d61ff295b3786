"""The `serve` CLI: flags, environment variables, and a real server process with JSON logs."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from benchmarks.server_process import free_port
from server.cli import build_parser, env_name, main, open_model, settings_from
from server.settings import Settings

REPO = Path(__file__).resolve().parents[2]
STARTUP_LINES = 50  # log lines to read while waiting for the server to say where it listens


def test_help_lists_every_setting_with_its_env_var(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for field in dataclasses.fields(Settings):
        flag = field.name.replace("_", "-")
        assert f"--{flag}" in text
        assert env_name(flag) in text.replace("- ", "-")
    assert "STEP_REALTIME_RESPONDER" in text


def test_env_vars_set_defaults_and_flags_win() -> None:
    env = {
        "STEP_REALTIME_API_KEYS": "k1, k2",
        "STEP_REALTIME_MAX_SESSIONS": "3",
        "STEP_REALTIME_ALLOW_REMOTE_WITHOUT_AUTH": "true",
        "STEP_REALTIME_DEFAULT_VOICE": "",
    }
    args = build_parser(env).parse_args(["serve", "--max-sessions", "5"])
    settings = settings_from(args)
    assert settings.api_keys == ("k1", "k2")
    assert settings.max_sessions == 5
    assert settings.allow_remote_without_auth is True
    assert settings.default_voice is None


def test_refuses_remote_bind_without_keys(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--host", "0.0.0.0", "--responder", "x:y"]) == 2
    assert "API key" in capsys.readouterr().err


def test_refuses_unknown_reasoning_effort(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--reasoning-effort", "extreme", "--responder", "x:y"]) == 2
    assert "xhigh" in capsys.readouterr().err


def test_refuses_a_port_out_of_range(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--port", "99999", "--responder", "x:y"]) == 2
    assert "99999 is not a TCP port" in capsys.readouterr().err


def test_refuses_unknown_turn_detection_and_vad(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--turn-detection", "magic", "--responder", "x:y"]) == 2
    assert "semantic_vad" in capsys.readouterr().err
    assert main(["serve", "--vad", "magic", "--responder", "x:y"]) == 2
    assert "silero" in capsys.readouterr().err


def test_the_remote_engine_needs_its_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--engine", "remote", "--responder", "x:y"]) == 2
    assert "--engine remote needs --engine-url" in capsys.readouterr().err


def test_an_unreachable_remote_engine_stops_serve_at_start_up() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = Settings(engine="remote", engine_url=url)
    with pytest.raises(
        SystemExit, match=f"error: cannot reach the vLLM server at {url}.*serve_vllm"
    ):
        open_model(settings)


def test_answer_refuses_an_unknown_effort_without_a_traceback(tmp_path: Path) -> None:
    done = _answer(tmp_path, "--effort", "extreme")
    assert done.returncode == 2 and "invalid choice: 'extreme'" in done.stderr
    assert "Traceback" not in done.stderr


def test_answer_says_a_model_file_is_not_a_checkpoint_directory(tmp_path: Path) -> None:
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"not a checkpoint")
    done = _answer(tmp_path, "--model", str(model))
    assert done.returncode == 1 and "is a file; --model takes the checkpoint's directory" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr


def test_answer_writes_no_colour_codes_into_a_pipe(tmp_path: Path) -> None:
    done = _answer(tmp_path, "--effort", "xhigh")
    assert done.returncode == 0, done.stderr
    assert "\033" not in done.stdout and done.stdout.strip()


def _answer(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """`step-realtime answer` on a spoken question, its output piped (not a terminal)."""
    import soundfile

    from tests.support.speech import spoken

    question = tmp_path / "question.wav"
    soundfile.write(question, spoken("what is seven times six", rate=16_000), 16_000)
    command = [sys.executable, "-m", "server.cli", "answer", str(question), *flags]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)


def test_serve_process_answers_health_and_logs_json() -> None:
    command = [
        sys.executable,
        "-m",
        "server",
        "serve",
        "--port",
        "0",
        "--responder",
        "tests.server.espeak_responder:FixedReplyResponder",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        address = None
        for _ in range(STARTUP_LINES):
            record = json.loads(process.stderr.readline())  # every log line is JSON
            found = re.search(r"http://(127\.0\.0\.1:\d+)", record["msg"])
            if found:
                address = found.group(1)
                break
        assert address is not None
        assert httpx.get(f"http://{address}/healthz").json() == {"status": "ok"}
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stderr is not None:
            process.stderr.close()
