"""The blocking wrapper, from a plain thread (as a script would run it), against the server."""

from __future__ import annotations

import asyncio

import numpy as np
import soxr

from step_realtime_client import mint_client_secret
from step_realtime_client.sync import Client
from tests.clients.harness import API_KEY, RunningServer
from tests.server.espeak_responder import DEFAULT_REPLY


async def test_the_sync_client_asks_with_a_minted_client_secret(
    running_server: RunningServer, question: np.ndarray
) -> None:
    secret = await mint_client_secret(running_server.url, API_KEY, ttl_seconds=60)
    assert secret.startswith("ek_")

    # as a script might hold it: float samples at 16 kHz
    question_16k = soxr.resample(question.astype(np.float32) / 32768, 24_000, 16_000)

    def script() -> tuple[str, str, list[str]]:
        with Client(running_server.url, api_key=secret) as client:
            reply = client.ask(question_16k, sample_rate=16_000, realtime=False)
            client.update_session(instructions="be brief")
            later = [event.type for event in client.events(max_wait_s=1.0)]
        return reply.status, reply.transcript, later

    # the server runs on this test's loop: the script gets its own thread, like a user's script
    status, transcript, later = await asyncio.to_thread(script)
    assert status == "completed" and transcript == DEFAULT_REPLY
    assert "session.updated" in later
