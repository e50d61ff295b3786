"""`step-realtime serve` in a child process, for the tests that need the real process (signals,
exit codes, an installed wheel): its log lines (stderr) are read in a thread. For the two-tier
test, a vLLM server (`streaming.engine.serve_vllm`) and HAProxy in front of replicas too."""

from __future__ import annotations

import contextlib
import csv
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from benchmarks.server_process import REPOSITORY, free_port

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
            # uvicorn's own line: an earlier one may name another server (--engine-url)
            found = re.search(r"running on http://(127\.0\.0\.1:\d+)", line)
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
        terminate(self.process)


def terminate(process: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL if it is still there after `STOP_TIMEOUT_S`."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def repo_server(*flags: str, start_timeout_s: float = 60.0) -> ServeProcess:
    """`python -m server serve --port 0 FLAGS` from this checkout."""
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    command = [sys.executable, "-m", "server", "serve", "--port", "0", *flags]
    return ServeProcess(command, repo, env, start_timeout_s)


# --- two tiers: a vLLM server for the decoder, HAProxy in front of front ends ----------------


class VllmTier:
    """`python -m streaming.engine.serve_vllm CHECKPOINT` on a free port of 127.0.0.1, in a
    process group of its own (vLLM's engine core and worker are children); `wait_healthy()`
    waits for `/health`, `stop()` ends the whole group."""

    def __init__(self, checkpoint: Path, *flags: str, start_timeout_s: float = 600.0) -> None:
        repo = Path(__file__).resolve().parents[2]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.start_timeout_s = start_timeout_s
        command = [
            *(sys.executable, "-m", "streaming.engine.serve_vllm", str(checkpoint)),
            *("--host", "127.0.0.1", "--port", str(self.port), "--uvicorn-log-level", "warning"),
            *flags,
        ]
        env = {**os.environ, "PYTHONPATH": str(repo)}
        env.setdefault("OMP_NUM_THREADS", "1")
        self.process = subprocess.Popen(command, cwd=repo, env=env, start_new_session=True)

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"vLLM exited with {self.process.returncode}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            time.sleep(0.5)
        raise AssertionError(f"vLLM was not healthy within {self.start_timeout_s:g} s")

    def stop(self) -> None:
        """SIGTERM to the group, then SIGKILL to what is left of it after the timeout."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=STOP_TIMEOUT_S)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


# The balancer config that ships (docs/scaling.md): the test runs this very file.
HAPROXY_CONFIG = REPOSITORY / "deploy" / "haproxy.cfg"


def haproxy_command() -> str | None:
    """Debian's `haproxy` (in /usr/sbin, which a user's PATH may lack), or None."""
    return shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")


class Haproxy:
    """HAProxy (Debian's `haproxy`) with deploy/haproxy.cfg on a free port of 127.0.0.1 in
    front of two `replicas` ('host:port' each, s0 and s1 in its pool), with `/readyz` as the
    health check; `states()` reads its stats page."""

    def __init__(self, replicas: Sequence[str], directory: Path) -> None:
        assert len(replicas) == 2, "deploy/haproxy.cfg names two front ends"
        self.port, self.stats_port = free_port(), free_port()
        self.names = {address: f"s{i}" for i, address in enumerate(replicas)}
        environment = {
            **os.environ,
            "LISTEN": f"127.0.0.1:{self.port}",
            "STATS": f"127.0.0.1:{self.stats_port}",
            **{f"REPLICA_{i}": address for i, address in enumerate(replicas)},
        }
        command = haproxy_command()
        assert command is not None, "no haproxy: apt-get install haproxy"
        self.process = subprocess.Popen(
            [command, "-db", "-f", str(HAPROXY_CONFIG)], env=environment, cwd=directory
        )
        self.url = f"ws://127.0.0.1:{self.port}/v1/realtime"

    def states(self) -> dict[str, str]:
        """Each replica's state in the pool ('UP', 'DOWN'...), by its address."""
        response = httpx.get(f"http://127.0.0.1:{self.stats_port}/stats;csv", timeout=2)
        rows = csv.DictReader(response.text.removeprefix("# ").splitlines())
        by_name = {row["svname"]: row["status"] for row in rows if row["pxname"] == "replicas"}
        return {address: by_name[name] for address, name in self.names.items()}

    def wait_states(self, wanted: Mapping[str, str], timeout_s: float = 60.0) -> None:
        """Until the replicas of `wanted` are in those states (e.g. {'127.0.0.1:8001': 'UP'})."""
        deadline = time.monotonic() + timeout_s
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"haproxy exited with {self.process.returncode}"
            with contextlib.suppress(httpx.HTTPError):
                states = self.states()
                if all(states[a].split()[0] == state for a, state in wanted.items()):
                    return
            time.sleep(0.1)
        raise AssertionError(f"haproxy's pool is {states}, not {dict(wanted)}")

    def stop(self) -> None:
        terminate(self.process)
