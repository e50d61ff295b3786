"""The CLI as a user runs it: a subprocess against the real server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import soundfile

from tests.clients.harness import API_KEY, CLIENTS_DIR, RunningServer
from tests.server.espeak_responder import DEFAULT_REASONING, DEFAULT_REPLY

CLI_TIMEOUT_S = 60.0


def has_audio_devices() -> bool:
    try:
        import sounddevice
    except (ImportError, OSError):  # OSError: the wheel is there, PortAudio is not
        return False
    return len(sounddevice.query_devices()) > 0


@dataclass
class Finished:
    code: int
    out: str
    err: str


async def run_cli(*args: str, url: str, key: str | None, cwd: Path) -> Finished:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEP_REALTIME_")}
    env["PYTHONPATH"] = str(CLIENTS_DIR)
    env["STEP_REALTIME_URL"] = url
    if key is not None:
        env["STEP_REALTIME_API_KEY"] = key
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "step_realtime_client",
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), CLI_TIMEOUT_S)
    assert process.returncode is not None
    return Finished(process.returncode, out.decode(), err.decode())


async def test_ask_prints_reasoning_and_answer_and_saves_the_reply(
    running_server: RunningServer, question_wav: Path, tmp_path: Path
) -> None:
    done = await run_cli(
        "ask",
        str(question_wav),
        "-o",
        "answer.wav",
        url=running_server.url,
        key=API_KEY,
        cwd=tmp_path,
    )
    assert done.code == 0, done.err
    assert f"reasoning: {DEFAULT_REASONING}" in done.out
    assert f"answer: {DEFAULT_REPLY}" in done.out
    assert "latency: first packet" in done.out
    audio, rate = soundfile.read(tmp_path / "answer.wav", dtype="int16")
    assert rate == 24_000 and len(audio) > rate  # over a second of speech


async def test_a_bad_key_gives_a_clear_error_and_no_traceback(
    running_server: RunningServer, question_wav: Path, tmp_path: Path
) -> None:
    done = await run_cli(
        "ask", str(question_wav), url=running_server.url, key="sk-wrong", cwd=tmp_path
    )
    assert done.code == 3
    assert "refused the credentials" in done.err and "STEP_REALTIME_API_KEY" in done.err
    assert "Traceback" not in done.err + done.out
    assert not (tmp_path / "reply.wav").exists()


async def test_a_missing_file_and_an_unreachable_server_are_plain_errors(
    running_server: RunningServer, question_wav: Path, tmp_path: Path
) -> None:
    missing = await run_cli("ask", "nope.wav", url=running_server.url, key=API_KEY, cwd=tmp_path)
    closed_port = running_server.url.rsplit(":", 1)[0] + ":9/v1/realtime"  # discard: refused
    unreachable = await run_cli(
        "ask", str(question_wav), url=closed_port, key=API_KEY, cwd=tmp_path
    )
    for done in (missing, unreachable):
        assert done.code == 1 and "Traceback" not in done.err
    assert "no such audio file" in missing.err
    assert "cannot connect" in unreachable.err


async def test_events_dumps_every_event_as_a_json_line(
    running_server: RunningServer, question_wav: Path, tmp_path: Path
) -> None:
    done = await run_cli(
        "events", str(question_wav), "--fast", url=running_server.url, key=API_KEY, cwd=tmp_path
    )
    assert done.code == 0, done.err
    events = [json.loads(line) for line in done.out.splitlines()]
    types = [event["type"] for event in events]
    assert types[0] == "session.created" and types[-1] == "response.done"
    assert "response.reasoning_text.delta" in types
    audio = [e for e in events if e["type"] == "response.output_audio.delta"]
    assert audio and all(e["delta"].endswith(" bytes>") for e in audio)


async def test_chat_and_mic_events_without_audio_devices_say_what_to_install(
    running_server: RunningServer, tmp_path: Path
) -> None:
    """Without PortAudio or a sound card, chat must say what is missing, not crash."""
    if has_audio_devices():
        pytest.skip("this machine has audio devices: chat would really start")
    for command in ("chat", "events"):  # events without a file listens to the microphone
        done = await run_cli(command, url=running_server.url, key=API_KEY, cwd=tmp_path)
        assert done.code == 1, command
        assert "audio extra" in done.err and "Traceback" not in done.err
