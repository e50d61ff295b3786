"""`LiveClient`: GPT-Live against the real server on 127.0.0.1 (`/v1/live/sessions`), with the
test responder and with the shipped embedded model; errors as the client's types."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from server.app import create_app
from server.settings import Settings
from step_realtime_client import (
    AuthenticationError,
    LiveClient,
    ServerError,
    client_for,
    dialect_url,
)
from step_realtime_client.events import ErrorEvent
from step_realtime_client.gpt_live import DEFAULT_LIVE_MODEL
from streaming.default_model import SHIPPED_CHECKPOINT
from streaming.pipeline import load_responder
from streaming.responder import Responder
from tests.clients.harness import API_KEY, RunningServer, client_speech
from tests.clients.test_client_cli import run_cli
from tests.server.espeak_responder import DEFAULT_REPLY
from tests.support.serving import InProcessServer

EVENT_TIMEOUT_S = 10.0


def live_url(server: RunningServer) -> str:
    return dialect_url(server.url, "live")


async def test_a_spoken_question_is_answered_with_audio_and_transcript(
    running_server: RunningServer, question: np.ndarray
) -> None:
    seen: list[str] = []
    async with LiveClient(live_url(running_server), api_key=API_KEY) as client:
        assert client.session["model"] == DEFAULT_LIVE_MODEL  # session.started's echo
        reply = await client.ask(question, on_event=lambda event: seen.append(event.type))
        again = await client.ask(question, realtime=False)  # nothing of the first one left
    for answered in (reply, again):
        assert answered.status == "completed" and answered.transcript == DEFAULT_REPLY
        assert answered.audio_seconds > 1.0 and np.abs(answered.audio).max() > 1000
    assert {"session.output_audio.delta", "session.output_transcript.delta"} <= set(seen)
    timings = reply.timings
    assert timings.speech_end_sent_at is not None and timings.first_audio_at is not None
    assert 0 < timings.first_packet_latency < timings.response_time  # type: ignore[operator]
    assert timings.endpoint_delay is None  # GPT-Live keeps its turn events to itself


async def test_client_for_picks_the_dialects_endpoint(
    running_server: RunningServer, question: np.ndarray
) -> None:
    """One server URL for both: `client_for` moves it to the dialect's endpoint."""
    for dialect in ("realtime", "live"):
        async with client_for(dialect, running_server.url, api_key=API_KEY) as client:
            reply = await client.ask(question, realtime=False)
        assert reply.transcript == DEFAULT_REPLY, dialect
    assert dialect_url("wss://h/proxy/v1/realtime", "live") == "wss://h/proxy/v1/live/sessions"
    assert dialect_url("ws://h/elsewhere", "live") == "ws://h/elsewhere"


async def test_a_bad_key_raises_authentication_error(running_server: RunningServer) -> None:
    for key in ("sk-wrong", None):
        with pytest.raises(AuthenticationError, match="refused the credentials"):
            await LiveClient(live_url(running_server), api_key=key).connect()


async def test_a_refused_session_start_names_the_field(running_server: RunningServer) -> None:
    client = LiveClient(
        live_url(running_server), api_key=API_KEY, session={"audio": {"output": {"voice": "x"}}}
    )
    with pytest.raises(ServerError, match="voice") as raised:
        await client.connect()
    assert raised.value.event.code == "invalid_value"


async def test_a_bad_event_is_an_error_event_and_the_session_goes_on(
    running_server: RunningServer, question: np.ndarray
) -> None:
    async with LiveClient(live_url(running_server), api_key=API_KEY) as client:
        await client.send({"type": "session.input_audio.append", "audio": "**", "event_id": "b"})
        error = await client.next_event(EVENT_TIMEOUT_S)
        assert isinstance(error, ErrorEvent)
        assert (error.code, error.client_event_id) == ("invalid_base64", "b")
        reply = await client.ask(question, realtime=False)
    assert reply.transcript == DEFAULT_REPLY


async def test_the_cli_asks_in_the_live_dialect(
    running_server: RunningServer, question_wav: Path, tmp_path: Path
) -> None:
    """`--dialect live` with the Realtime URL of the environment: the CLI goes to Live's."""
    done = await run_cli(
        "ask", str(question_wav), "--fast", "--dialect", "live",
        url=running_server.url, key=API_KEY, cwd=tmp_path,
    )  # fmt: skip
    assert done.code == 0, done.err
    assert f"answer: {DEFAULT_REPLY}" in done.out and "latency: first packet" in done.out
    assert (tmp_path / "reply.wav").stat().st_size > 24_000


@pytest.fixture
async def shipped_server() -> AsyncIterator[str]:
    """The server on the shipped embedded model (2M parameters, on the CPU)."""
    responder: Responder = load_responder(
        SHIPPED_CHECKPOINT, device="cpu", dtype="float32", max_sequences=2
    )
    try:
        async with InProcessServer.of(
            create_app(responder, Settings(api_keys=(API_KEY,)))
        ) as served:
            yield f"ws://{served.address}/v1/live/sessions"
    finally:
        await responder.close()


async def test_the_shipped_model_answers_through_live(shipped_server: str) -> None:
    async with LiveClient(shipped_server, api_key=API_KEY) as client:
        reply = await asyncio.wait_for(
            client.ask(client_speech("what is seven times six"), realtime=False), 60
        )
    assert not reply.errors and reply.audio_seconds > 0.3
    answer = reply.transcript.lower().replace("-", " ")
    assert "42" in answer or "forty two" in answer, reply.transcript
