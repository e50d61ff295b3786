"""Fixtures: a real server on 127.0.0.1 per test, spoken questions (see harness.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from server.app import create_app
from server.settings import Settings
from tests.clients.harness import (
    API_KEY,
    RunningServer,
    client_speech,
)
from tests.server.espeak_responder import FixedReplyResponder
from tests.support.serving import InProcessServer


@pytest.fixture
def responder() -> FixedReplyResponder:
    return FixedReplyResponder()


@pytest.fixture
async def running_server(responder: FixedReplyResponder) -> AsyncIterator[RunningServer]:
    app = create_app(responder, Settings(api_keys=(API_KEY,)))
    async with InProcessServer.of(app) as served:
        yield RunningServer(f"ws://{served.address}/v1/realtime", responder, served.server)


@pytest.fixture(scope="session")
def question() -> np.ndarray:
    return client_speech()


@pytest.fixture(scope="session")
def question_wav(tmp_path_factory: pytest.TempPathFactory, question: np.ndarray) -> Path:
    from step_realtime_client.audio import write_wav

    path = tmp_path_factory.mktemp("question") / "question.wav"
    write_wav(path, question)
    return path
