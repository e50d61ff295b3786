"""`step-realtime serve` in a child process, for the tests that need the real process (signals,
exit codes, an installed wheel): its log lines (stderr) are read in a thread."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

STOP_TIMEOUT_S = 30.0


class ServeProcess:
    def __init__(
        self,
        command: Sequence[str | Path],
        cwd: Path,
        env: Mapping[str, str],
        start_timeout_s: float,
    ) -> None:
        self.start_timeout_s = start_timeout_s
        self.process = subprocess.Popen(
            list(command), cwd=cwd, env=dict(env), stderr=subprocess.PIPE, text=True
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)

    def address(self) -> str:
        """host:port, from the line in which the server says where it listens."""
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                assert self.process.poll() is None, f"the server exited: {''.join(self.log)}"
                continue
            self.log.append(line)
            found = re.search(r"http://(127\.0\.0\.1:\d+)", line)
            if found:
                return found.group(1)
        raise AssertionError(f"the server did not say where it listens: {''.join(self.log)}")

    def wait_ready(self, address: str) -> httpx.Response:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the server exited: {''.join(self.log)}"
            response = httpx.get(f"http://{address}/readyz")
            if response.status_code == 200:
                return response
            time.sleep(0.5)
        raise AssertionError("/readyz never answered 200")

    def read_log(self) -> str:
        """The whole log so far."""
        while not self.lines.empty():
            self.log.append(self.lines.get())
        return "".join(self.log)

    def stop(self) -> None:
        """SIGTERM (the server drains), then SIGKILL if it is still there after the timeout."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def repo_server(*flags: str, start_timeout_s: float = 60.0) -> ServeProcess:
    """`python -m server serve --port 0 FLAGS` from this checkout."""
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    command = [sys.executable, "-m", "server", "serve", "--port", "0", *flags]
    return ServeProcess(command, repo, env, start_timeout_s)
