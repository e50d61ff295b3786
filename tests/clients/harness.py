"""The test harness for the client: a real server on 127.0.0.1 (uvicorn on a free port)
around the espeak test responder, and spoken questions from the real espeak-ng."""

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

from server.app import create_app  # noqa: E402
from server.settings import Settings  # noqa: E402
from step_realtime_client.audio import to_wire  # noqa: E402
from tests.server.espeak_responder import FixedReplyResponder  # noqa: E402
from tts.espeak import synthesize  # noqa: E402

API_KEY = "sk-client-test"
QUESTION = "What is seven times six?"
SERVER_START_TIMEOUT_S = 10.0
LEADING_SILENCE_MS = 300  # as a microphone picks up before the user speaks


@dataclass
class RunningServer:
    url: str  # ws://127.0.0.1:PORT/v1/realtime
    responder: FixedReplyResponder
    server: uvicorn.Server


async def start_server(
    responder: FixedReplyResponder, settings: Settings
) -> tuple[uvicorn.Server, asyncio.Task[None], int]:
    app = create_app(responder, settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(SERVER_START_TIMEOUT_S):
        while not server.started:
            if task.done():
                task.result()  # raises what stopped it
            await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, task, port


async def stop_server(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    server.should_exit = True
    await task


def spoken(text: str = QUESTION, voice: str = "en-us") -> np.ndarray:
    """`text` spoken by espeak-ng, 24 kHz int16, with a little silence before it."""
    pcm, rate, _ = synthesize(text, voice)
    speech = to_wire(pcm, rate)
    return np.concatenate([np.zeros(24 * LEADING_SILENCE_MS, np.int16), speech])


RELAY_BUFFER = 65536


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction of a TCP relay until either side goes; then drop the writer's side."""
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(RELAY_BUFFER):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()
