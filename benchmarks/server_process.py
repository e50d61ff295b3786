"""A server in a child process for the benchmarks that measure it over a real socket.

The benchmark and the server must not share an event loop or a GIL, or the client's own work
would show up as server latency.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

SERVER_START_TIMEOUT_S = 300.0  # loading a checkpoint can take a while on a busy machine
REPOSITORY = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def server_process(module: str, port: int, args: list[str]) -> Iterator[None]:
    """`python -m module --serve --port PORT *args` until the block ends; ready on entry."""
    command = [sys.executable, "-m", module, "--serve", "--port", str(port), *args]
    process = subprocess.Popen(command, cwd=REPOSITORY)
    try:
        wait_ready(f"http://127.0.0.1:{port}/healthz", process)
        yield
    finally:
        stop_process(process)


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """SIGTERM (a server drains its sessions), then SIGKILL after `timeout_s`; reaped."""
    process.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout_s)
    if process.poll() is None:
        process.kill()
        process.wait()


def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with code {process.returncode}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2):
            return
        time.sleep(0.2)
    raise SystemExit(f"the server was not ready within {SERVER_START_TIMEOUT_S:g} s")
