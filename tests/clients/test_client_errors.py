"""What the library raises when the server says no: typed errors with messages for a user."""

from __future__ import annotations

import numpy as np
import pytest

from server.app import create_app
from server.settings import Settings
from step_realtime_client import (
    AuthenticationError,
    NoSpeechDetected,
    RealtimeClient,
    ServerError,
    ServerRefused,
    mint_client_secret,
)
from tests.clients.harness import API_KEY, RunningServer, client_speech
from tests.server.espeak_responder import DEFAULT_REPLY, FixedReplyResponder
from tests.support.serving import InProcessServer


async def test_a_bad_key_or_secret_raises_authentication_error(
    running_server: RunningServer,
) -> None:
    for key in ("sk-wrong", "ek_expired-or-made-up", None):
        with pytest.raises(AuthenticationError, match="refused the credentials"):
            await RealtimeClient(running_server.url, api_key=key).connect()
    with pytest.raises(AuthenticationError):
        await mint_client_secret(running_server.url, "sk-wrong")


async def test_a_full_server_refuses_with_try_again_later() -> None:
    app = create_app(FixedReplyResponder(), Settings(max_sessions=1))
    async with InProcessServer.of(app) as served:
        url = f"ws://{served.address}/v1/realtime"
        async with RealtimeClient(url):
            with pytest.raises(ServerRefused, match="try again later"):
                await RealtimeClient(url).connect()


async def test_a_bad_session_update_names_the_field(running_server: RunningServer) -> None:
    client = RealtimeClient(
        running_server.url, api_key=API_KEY, session={"audio": {"output": {"voice": "nobody"}}}
    )
    with pytest.raises(ServerError, match="nobody") as raised:
        await client.connect()
    assert raised.value.event.code == "invalid_value"


async def test_silent_audio_says_no_speech_was_heard(running_server: RunningServer) -> None:
    silent = np.zeros(24_000, np.int16)  # one second of digital silence
    async with RealtimeClient(running_server.url, api_key=API_KEY) as client:
        with pytest.raises(NoSpeechDetected, match="heard no speech"):
            await client.ask(silent, realtime=False)
        # what was not heard is cleared: the next question gets its own reply, not a late one
        reply = await client.ask(client_speech(), realtime=False)
    assert reply.status == "completed" and reply.transcript == DEFAULT_REPLY
