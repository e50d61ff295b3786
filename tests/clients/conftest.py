"""Fixtures: a real server on 127.0.0.1 per test, spoken questions (see harness.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from server.settings import Settings
from tests.clients.harness import (
    API_KEY,
    RunningServer,
    spoken,
    start_server,
    stop_server,
)
from tests.server.espeak_responder import FixedReplyResponder


@pytest.fixture
def responder() -> FixedReplyResponder:
    return FixedReplyResponder()


@pytest.fixture
async def running_server(responder: FixedReplyResponder) -> AsyncIterator[RunningServer]:
    server, task, port = await start_server(responder, Settings(api_keys=(API_KEY,)))
    try:
        yield RunningServer(f"ws://127.0.0.1:{port}/v1/realtime", responder, server)
    finally:
        await stop_server(server, task)


@pytest.fixture(scope="session")
def question() -> np.ndarray:
    return spoken()


@pytest.fixture(scope="session")
def question_wav(tmp_path_factory: pytest.TempPathFactory, question: np.ndarray) -> Path:
    from step_realtime_client.audio import write_wav

    path = tmp_path_factory.mktemp("question") / "question.wav"
    write_wav(path, question)
    return path
