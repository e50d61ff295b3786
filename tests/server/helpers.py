"""Helpers for the server tests: espeak-ng test speech, appends, a live uvicorn, event reading."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import soxr
import uvicorn

from tts.espeak import synthesize

APPEND_MS = 20  # a microphone-like append size
EVENT_TIMEOUT_S = 30  # generous: the machine is shared; no test asserts wall-clock times
# Silence before a barge-in's speech, sent after the reply's first audio: the reply could have
# played longer than a merge allows (server.protocol.session.MERGE_MAX_HEARD_MS), so the speech
# interrupts it rather than continuing the question.
BARGE_IN_LEAD_MS = 900


def spoken(text: str, rate: int = 24_000, lead_ms: int = 300, tail_ms: int = 1000) -> np.ndarray:
    """`text` spoken by espeak-ng as int16 at `rate`, with silence before and after."""
    pcm, native_rate, _ = synthesize(text)
    pcm = soxr.resample(pcm, native_rate, rate).astype(np.int16)
    silence = lambda ms: np.zeros(rate * ms // 1000, np.int16)  # noqa: E731
    return np.concatenate([silence(lead_ms), pcm, silence(tail_ms)])


def appends(pcm: np.ndarray, rate: int = 24_000, ms: int = APPEND_MS) -> list[str]:
    """`input_audio_buffer.append` messages carrying `pcm` (PCM16) in `ms` pieces."""
    step = rate * ms // 1000
    return [
        json.dumps(
            {
                "type": "input_audio_buffer.append",
                "audio": base64.b64encode(pcm[i : i + step].astype("<i2").tobytes()).decode(),
            }
        )
        for i in range(0, len(pcm), step)
    ]


@contextlib.asynccontextmanager
async def running(app: Any) -> AsyncIterator[str]:
    """Serve `app` with uvicorn on 127.0.0.1 and a free port; yields 'host:port'."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=1,
    )
    async with serving(config) as address:
        yield address


@contextlib.asynccontextmanager
async def serving(config: uvicorn.Config) -> AsyncIterator[str]:
    """Run a uvicorn server of `config` (port 0: a free one) until the block ends; yields
    'host:port'."""
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def recv_until(ws: Any, type_: str) -> list[dict]:
    """Events from a websockets client connection up to and including the first `type_`."""
    events = []
    async with asyncio.timeout(EVENT_TIMEOUT_S):
        while True:
            event = json.loads(await ws.recv())
            events.append(event)
            if event["type"] == type_:
                return events
