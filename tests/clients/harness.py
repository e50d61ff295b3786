"""The test harness for the client: a real server on 127.0.0.1 around the espeak test responder
(tests/support/serving.py), and spoken questions from the real espeak-ng."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import uvicorn

CLIENTS_DIR = Path(__file__).resolve().parents[2] / "clients"
if importlib.util.find_spec("step_realtime_client") is None:
    # the client is its own distribution (clients/pyproject.toml); without `pip install
    # ./clients` in this environment, import it from the source tree
    sys.path.insert(0, str(CLIENTS_DIR))

from tests.server.espeak_responder import FixedReplyResponder  # noqa: E402
from tests.support.speech import spoken  # noqa: E402

API_KEY = "sk-client-test"
QUESTION = "What is seven times six?"
LEADING_SILENCE_MS = 300  # as a microphone picks up before the user speaks


@dataclass
class RunningServer:
    url: str  # ws://127.0.0.1:PORT/v1/realtime
    responder: FixedReplyResponder
    server: uvicorn.Server


def client_speech(text: str = QUESTION) -> np.ndarray:
    """`text` spoken by espeak-ng, 24 kHz int16, with a little silence before it."""
    return spoken(text, lead_ms=LEADING_SILENCE_MS, tail_ms=0)


RELAY_BUFFER = 65536


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction of a TCP relay until either side goes; then drop the writer's side."""
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(RELAY_BUFFER):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()
