"""`ask` against the real server: a spoken question in, audio, transcript, reasoning out."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from step_realtime_client import RealtimeClient
from tests.clients.harness import API_KEY, RunningServer, client_speech
from tests.server.espeak_responder import DEFAULT_REASONING, DEFAULT_REPLY

CLOSE_WAIT_S = 5.0  # the server notices a closed socket at once; this only bounds a failure


async def test_ask_yields_audio_transcript_reasoning_and_timings(
    running_server: RunningServer, question: np.ndarray
) -> None:
    seen: list[str] = []
    async with RealtimeClient(running_server.url, api_key=API_KEY) as client:
        reply = await client.ask(question, on_event=lambda event: seen.append(event.type))
    assert reply.status == "completed"
    assert reply.transcript == DEFAULT_REPLY
    assert reply.reasoning.strip() == DEFAULT_REASONING
    assert reply.audio_seconds > 1.0  # "Seven times six is forty two. That is the answer."
    assert np.abs(reply.audio).max() > 1000  # speech, not silence
    timings = reply.timings
    assert timings.speech_end_sent_at is not None
    assert timings.committed_at is not None and timings.first_audio_at is not None
    # the order of a real turn: speech ends, the server commits, then audio comes back
    assert timings.speech_end_sent_at < timings.committed_at < timings.first_audio_at
    assert timings.first_packet_latency == pytest.approx(
        timings.endpoint_delay + timings.server_latency
    )
    assert "response.reasoning_text.delta" in seen
    assert seen.index("response.reasoning_text.delta") < seen.index("response.output_audio.delta")


async def test_a_pause_inside_the_question_gets_the_reply_to_all_of_it(
    running_server: RunningServer,
) -> None:
    """The server takes the pause for the turn's end and starts a reply; the rest of the
    question cancels it (`turn_detected`); `ask` returns the reply to the whole question."""
    pause = np.zeros(24 * 900, np.int16)  # longer than server_vad's 500 ms silence window
    question = np.concatenate([client_speech("what is seven"), pause, client_speech("times six")])
    cancelled: list[object] = []

    def note(event: object) -> None:
        if getattr(event, "status", None) == "cancelled":
            cancelled.append(event)

    async with RealtimeClient(running_server.url, api_key=API_KEY) as client:
        reply = await client.ask(question, realtime=False, on_event=note)
    assert cancelled, "the pause did not split the turn: this test tests nothing"
    assert reply.status == "completed" and reply.transcript == DEFAULT_REPLY


async def test_beta_protocol_and_key_in_subprotocol(
    running_server: RunningServer, question: np.ndarray
) -> None:
    """A browser-style client: the key as a subprotocol; beta event names come back."""
    seen: set[str] = set()
    async with RealtimeClient(
        running_server.url, api_key=API_KEY, beta=True, key_in_subprotocol=True
    ) as client:
        reply = await client.ask(question, realtime=False, on_event=lambda e: seen.add(e.type))
    assert reply.transcript == DEFAULT_REPLY and reply.audio_seconds > 1.0
    assert "response.audio.delta" in seen and "response.output_audio.delta" not in seen


async def test_without_turn_detection_the_client_commits_and_asks(
    running_server: RunningServer, question: np.ndarray
) -> None:
    manual = {"audio": {"input": {"turn_detection": None}}}
    async with RealtimeClient(running_server.url, api_key=API_KEY, session=manual) as client:
        assert client.turn_detection is None
        reply = await client.ask(question, realtime=False)
    assert reply.status == "completed" and reply.transcript == DEFAULT_REPLY
    assert reply.timings.endpoint_delay is not None  # the commit's ack, not a VAD window


async def test_close_ends_the_server_session(running_server: RunningServer) -> None:
    state = running_server.server.config.app.state
    async with RealtimeClient(running_server.url, api_key=API_KEY) as client:
        assert client.session["object"] == "realtime.session"
        assert state.active_sessions == 1
    async with asyncio.timeout(CLOSE_WAIT_S):
        while state.active_sessions:  # noqa: ASYNC110 - the app's counter has no event
            await asyncio.sleep(0.01)
