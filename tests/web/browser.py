"""Helpers for the browser tests: Debian's Chromium under Playwright, a microphone faked from a
WAV that espeak-ng speaks at test time, the real server (and the example backend) in child
processes on 127.0.0.1, and reading the page's state from its DOM."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import soxr

from benchmarks.server_process import REPOSITORY, free_port, stop_process, wait_ready
from tts.espeak import DEFAULT_RATE_WPM, synthesize

CHROMIUM = os.environ.get("STEP_REALTIME_CHROMIUM", "/usr/bin/chromium")
SKIP_VARIABLE = "STEP_REALTIME_SKIP_BROWSER_TESTS"  # machines where setup.sh cannot apt-get
# As root (CI) Chromium needs --no-sandbox. The rest keep it from trying to reach the network,
# which this machine closes: each attempt costs time (see scripts/setup.sh).
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FAKE_MICROPHONE_FLAGS = ["--use-fake-device-for-media-stream"]
GRANT_MICROPHONE_FLAG = "--use-fake-ui-for-media-stream"  # accept the permission prompt
NO_LOOP = "%noloop"  # Chromium loops the fake capture file unless told not to
FAKE_CAPTURE_RATE = 48_000  # the fake device's own rate: no resampling before the page's
VIEWPORT = {"width": 1280, "height": 800}
# Bounds on waiting, not measurements: generous, since the machine is shared (no test asserts
# a wall-clock time).
PAGE_TIMEOUT_MS = 20_000
TURN_TIMEOUT_MS = 90_000
FREE_TIMEOUT_S = 20.0  # a closed session frees its slot at once; this only bounds the wait


def require_browser() -> None:
    """Fail (or skip, where the machine cannot install a browser) without Chromium/Playwright."""
    missing = []
    if shutil.which(CHROMIUM) is None:
        missing.append(f"Chromium at {CHROMIUM} (Debian: apt-get install chromium)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing.append("Playwright for Python (pip install playwright)")
    if not missing:
        return
    text = f"the browser tests need {' and '.join(missing)}; bash scripts/setup.sh installs both"
    if os.environ.get(SKIP_VARIABLE):
        pytest.skip(text)
    pytest.fail(text)


def speech_wav(path: Path, parts: Sequence[str | float]) -> Path:
    """A WAV for the fake microphone: strings spoken by espeak-ng, numbers seconds of silence."""
    pieces = []
    for part in parts:
        if isinstance(part, str):
            pcm, rate, _ = synthesize(part)
            pieces.append(soxr.resample(pcm.astype(np.float32) / 32768, rate, FAKE_CAPTURE_RATE))
        else:
            pieces.append(np.zeros(int(FAKE_CAPTURE_RATE * part), np.float32))
    sf.write(path, np.concatenate(pieces), FAKE_CAPTURE_RATE, subtype="PCM_16")
    return path


def paused_speech_wav(path: Path, marked: str, pause_ms: int) -> Path:
    """A WAV of `marked` spoken as one sentence with `pause_ms` of silence cut in at its "|",
    after a second of silence and followed by three."""
    from benchmarks.turns import with_pauses

    speech = soxr.resample(
        with_pauses(marked, "en-us", DEFAULT_RATE_WPM, [pause_ms]), 24_000, FAKE_CAPTURE_RATE
    )
    silence = lambda s: np.zeros(int(FAKE_CAPTURE_RATE * s), np.float32)  # noqa: E731
    sf.write(
        path,
        np.concatenate([silence(1.0), speech, silence(3.0)]),
        FAKE_CAPTURE_RATE,
        subtype="PCM_16",
    )
    return path


@contextlib.contextmanager
def browser_page(
    playwright: Any,
    profile: Path,
    *,
    microphone_wav: Path | None = None,
    grant_microphone: bool = True,
) -> Iterator[Any]:
    """A fresh Chromium profile with the fake microphone (playing `microphone_wav` once) and
    one page; the page's JavaScript errors fail the test."""
    flags = [*CHROMIUM_FLAGS, *FAKE_MICROPHONE_FLAGS]
    if grant_microphone:
        flags.append(GRANT_MICROPHONE_FLAG)
    if microphone_wav is not None:
        flags.append(f"--use-file-for-fake-audio-capture={microphone_wav}{NO_LOOP}")
    context = playwright.chromium.launch_persistent_context(
        str(profile), executable_path=CHROMIUM, args=flags, headless=True, viewport=VIEWPORT
    )
    errors: list[str] = []
    try:
        page = context.new_page()
        page.set_default_timeout(PAGE_TIMEOUT_MS)
        page.on("pageerror", lambda error: errors.append(str(error)))
        yield page
    finally:
        context.close()
    assert not errors, f"the page threw: {errors}"


def open_page(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]")


# --- reading the page ------------------------------------------------------------------------

READ_TURNS = """() => [...document.querySelectorAll("#conversation article.turn")].map((n) => ({
  role: n.classList.contains("user") ? "user" : "assistant",
  data: { ...n.dataset },
  transcript: n.querySelector(".transcript")?.textContent ?? null,
  answer: n.querySelector(".answer")?.textContent ?? null,
  heard: n.querySelector(".answer .heard")?.textContent ?? null,
  unheard: n.querySelector(".answer .unheard")?.textContent ?? null,
  reasoning: n.querySelector(".reasoning .text")?.textContent ?? null,
  reasoningVisible: !!n.querySelector(".reasoning:not([hidden])"),
  meta: n.querySelector(".meta")?.textContent ?? null,
}))"""


@dataclass
class Turn:
    role: str
    data: dict[str, str]
    transcript: str | None
    answer: str | None
    heard: str | None
    unheard: str | None
    reasoning: str | None
    reasoningVisible: bool  # noqa: N815 (the page's name)
    meta: str | None

    def number(self, key: str) -> float:
        assert key in self.data, f"the turn has no data-{key}: {self.data}"
        return float(self.data[key])


def turns(page: Any) -> list[Turn]:
    return [Turn(**turn) for turn in page.evaluate(READ_TURNS)]


def assistant_turns(page: Any) -> list[Turn]:
    return [turn for turn in turns(page) if turn.role == "assistant"]


def wait_for_assistant_turns(page: Any, count: int, condition: str) -> list[Turn]:
    """Wait until `count` assistant turns match the CSS `condition` (e.g. `[data-finished]`)."""
    selector = f"#conversation article.assistant{condition}"
    page.wait_for_function(
        "([selector, count]) => document.querySelectorAll(selector).length >= count",
        arg=[selector, count],
        timeout=TURN_TIMEOUT_MS,
    )
    return assistant_turns(page)


def error_text(page: Any) -> str:
    return str(page.evaluate("document.getElementById('error').textContent"))


# --- servers in child processes --------------------------------------------------------------


@dataclass
class Process:
    url: str  # http://127.0.0.1:PORT
    port: int


@contextlib.contextmanager
def child_process(
    command: list[str], port: int, env: dict[str, str] | None = None
) -> Iterator[Process]:
    """Run `command` (which serves HTTP on `port`) until the block ends; ready on entry."""
    process = subprocess.Popen(command, cwd=REPOSITORY, env={**os.environ, **(env or {})})
    try:
        wait_ready(f"http://127.0.0.1:{port}/web/config.json", process)
        yield Process(f"http://127.0.0.1:{port}", port)
    finally:
        stop_process(process)


@contextlib.contextmanager
def realtime_server(args: Sequence[str] = (), port: int | None = None) -> Iterator[Process]:
    """`step-realtime serve` on 127.0.0.1 with the embedded default model."""
    port = port or free_port()
    command = [sys.executable, "-m", "server", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with child_process([*command, *args], port) as process:
        yield process


@contextlib.contextmanager
def example_backend(server: str, api_key: str, port: int) -> Iterator[Process]:
    """examples/web_backend.py in front of `server`, holding `api_key`."""
    command = [
        sys.executable,
        "-m",
        "examples.web_backend",
        "--server",
        server,
        "--port",
        str(port),
    ]
    with child_process(command, port, env={"STEP_REALTIME_API_KEY": api_key}) as process:
        yield process


def wait_until_free(server: str) -> None:
    """Wait for the keyed server's one session slot (an earlier test's session may be closing)."""
    deadline = time.monotonic() + FREE_TIMEOUT_S
    while True:
        try:
            with urllib.request.urlopen(server + "/readyz", timeout=2):
                return
        except (urllib.error.HTTPError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def page_connection(page: Any) -> dict[str, Any]:
    """The page's connection as it opened it: the secret it holds, its URL and the subprotocol
    the server picked."""
    return page.evaluate(
        "() => ({secret: window.stepRealtimePage.connection.secret,"
        " url: window.stepRealtimePage.connection.url,"
        " protocol: window.stepRealtimePage.connection.socket.protocol})"
    )
