"""The client as a user installs it: a fresh venv, `pip install ./clients` from the package
index (no project code, no torch), then `step-realtime-client ask` against a running server."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import venv
from pathlib import Path

import soundfile

from tests.clients.harness import API_KEY, CLIENTS_DIR, RunningServer
from tests.server.espeak_responder import DEFAULT_REPLY

INSTALL_TIMEOUT_S = 600.0
ASK_TIMEOUT_S = 60.0
PROJECT_PACKAGES = ("server", "streaming", "tts", "torch")


def install_client(root: Path) -> tuple[Path, str]:
    """A new venv under `root` with the client installed from a copy of `clients/` (a copy,
    so that the build leaves nothing in the source tree): its bin directory and `pip list`."""
    shutil.copytree(
        CLIENTS_DIR,
        root / "clients",
        ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"),
    )
    venv.create(root / "venv", with_pip=True)
    bin_dir = root / "venv" / "bin"
    subprocess.run(
        [bin_dir / "python", "-m", "pip", "install", "--quiet", "./clients"],
        cwd=root,
        check=True,
        timeout=INSTALL_TIMEOUT_S,
    )
    installed = subprocess.run(
        [bin_dir / "python", "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()
    return bin_dir, installed


async def test_pip_install_clients_alone_then_ask(
    running_server: RunningServer, question_wav: Path, tmp_path: Path
) -> None:
    bin_dir, installed = await asyncio.to_thread(install_client, tmp_path)
    assert "step-realtime-client==" in installed or "step_realtime_client==" in installed
    assert not any(f"\n{name}==" in "\n" + installed for name in PROJECT_PACKAGES)

    process = await asyncio.create_subprocess_exec(
        bin_dir / "step-realtime-client",
        "ask",
        str(question_wav),
        "--fast",
        "--url",
        running_server.url,
        "--api-key",
        API_KEY,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},  # nothing of the project's environment
    )
    out, err = await asyncio.wait_for(process.communicate(), ASK_TIMEOUT_S)
    assert process.returncode == 0, err.decode()
    assert f"answer: {DEFAULT_REPLY}" in out.decode()
    audio, rate = soundfile.read(tmp_path / "reply.wav", dtype="int16")
    assert len(audio) > rate
