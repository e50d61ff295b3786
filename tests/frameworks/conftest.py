"""Fixtures for the framework tests: one real server for the whole run, the spoken questions,
and the client runs (each scenario of each framework runs once and is shared by its tests)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from benchmarks.server_process import free_port
from tests.frameworks.harness import (
    BARGE_IN_SPEECH,
    FRAMEWORK_VENVS,
    PAUSED_QUESTION,
    QUESTION,
    SETUP_SCRIPT,
    ClientRun,
    run_client,
    server_process,
    venv_python,
    write_paused_speech,
    write_speech,
)

# Each client under test: (its framework's venv, its script, its extra arguments).
CLIENTS: dict[str, tuple[str, str, list[str]]] = {
    "pipecat": ("pipecat", "pipecat_client.py", []),
    "livekit_agent_session": ("livekit", "livekit_client.py", ["--mode", "agent_session"]),
    "livekit_realtime_session": ("livekit", "livekit_client.py", ["--mode", "realtime_session"]),
    "openai_agents": ("agents", "agents_client.py", []),
}


@pytest.fixture(scope="session")
def framework_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the spoken questions, the server's log and each run's wire dump are written."""
    return tmp_path_factory.mktemp("frameworks")


@pytest.fixture(scope="session")
def realtime_server(framework_dir: Path) -> Iterator[str]:
    """`step-realtime serve` on the embedded default model, for every framework test."""
    with server_process(free_port(), framework_dir / "server.log") as url:
        yield url


@pytest.fixture(scope="session")
def speech(framework_dir: Path) -> dict[str, Path]:
    return {
        "question": write_speech(QUESTION, framework_dir / "question.wav"),
        "barge_in": write_speech(BARGE_IN_SPEECH, framework_dir / "barge_in.wav", lead_ms=0),
        "paused": write_paused_speech(*PAUSED_QUESTION[:2], framework_dir / "paused.wav"),
    }


RunClient = Callable[..., ClientRun]


@pytest.fixture(scope="session")
def client_run(realtime_server: str, speech: dict[str, Path], framework_dir: Path) -> RunClient:
    """`client_run(client, scenario, *more_args)`: that client's run of that scenario, with
    `more_args` for its script (run once, cached)."""
    runs: dict[tuple[str, ...], ClientRun] = {}

    def get(client: str, scenario: str, *more_args: str) -> ClientRun:
        key = (client, scenario, *more_args)
        if key not in runs:
            framework, script, extra = CLIENTS[client]
            if not venv_python(framework).exists():
                pytest.fail(
                    f"{FRAMEWORK_VENVS[framework]} is missing: run `bash {SETUP_SCRIPT}` to make "
                    "the framework environments"
                )
            args = ["--scenario", scenario, "--question", str(speech["question"])]
            args += ["--barge-in", str(speech["barge_in"]), "--paused", str(speech["paused"])]
            args += [*extra, *more_args]
            dump = framework_dir / ("-".join(key).replace("--", "") + ".wire.jsonl")
            runs[key] = run_client(framework, script, args, realtime_server, dump)
        return runs[key]

    return get
