"""Barge-in against the real server: the reply stops and the assistant's item is truncated at
what was played. The test responder pauses after its first 200 ms speech chunk (its gate), so
the reply is reliably still in progress when the user interrupts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

from step_realtime_client import RealtimeClient
from step_realtime_client.audio import silence
from step_realtime_client.client import CHUNK_MS
from step_realtime_client.events import (
    AudioDelta,
    ItemTruncated,
    ResponseDone,
    ServerEvent,
    SpeechStarted,
)
from step_realtime_client.live import SimulatedPlayer, converse
from tests.clients.harness import API_KEY, RunningServer, client_speech
from tests.server.espeak_responder import CHUNK_MS as FIRST_CHUNK_MS
from tests.server.espeak_responder import FixedReplyResponder

EVENT_TIMEOUT_S = 20.0


@pytest.fixture
def gate() -> asyncio.Event:
    return asyncio.Event()


@pytest.fixture
def responder(gate: asyncio.Event) -> FixedReplyResponder:
    return FixedReplyResponder(gate=gate)


async def wait_for(client: RealtimeClient, kind: type[ServerEvent]) -> ServerEvent:
    while True:
        event = await client.next_event(EVENT_TIMEOUT_S)
        if isinstance(event, kind):
            return event


async def test_barge_in_truncates_at_the_played_ms(
    running_server: RunningServer, question: np.ndarray, gate: asyncio.Event
) -> None:
    player = SimulatedPlayer()
    async with RealtimeClient(running_server.url, api_key=API_KEY) as client:
        await client.stream_audio(question, realtime=False)
        await client.append_audio(silence(800))
        first = await wait_for(client, AudioDelta)
        assert isinstance(first, AudioDelta)
        player.play(first.item_id, first.pcm16())
        await asyncio.sleep(0.1)  # the listener hears some of it, then speaks
        stopped = await client.barge_in(player)
        after = [await client.next_event(EVENT_TIMEOUT_S)]
        while not isinstance(after[-1], ItemTruncated):
            after.append(await client.next_event(EVENT_TIMEOUT_S))
    gate.set()
    assert stopped is not None
    item_id, played_ms = stopped
    assert item_id == first.item_id and 0 < played_ms <= FIRST_CHUNK_MS
    truncated = after[-1]
    assert truncated.item_id == item_id and truncated.audio_end_ms == played_ms
    done = [event for event in after if isinstance(event, ResponseDone)]
    assert len(done) == 1 and done[0].status == "cancelled"
    assert running_server.responder.closed_early == 1  # the reply's generator was stopped
    assert player.stop() is None  # nothing plays any more


async def test_speech_during_a_reply_stops_playback_and_truncates(
    running_server: RunningServer, question: np.ndarray, gate: asyncio.Event
) -> None:
    first_audio = asyncio.Event()
    interruption = client_speech("No, wait.")

    async def user() -> AsyncIterator[np.ndarray]:
        """Asks, waits until the reply plays, then talks over it; a live microphone."""
        quiet = silence(CHUNK_MS)
        for start in range(0, len(question), len(quiet)):
            yield question[start : start + len(quiet)]
        while not first_audio.is_set():
            yield quiet
            await asyncio.sleep(CHUNK_MS / 1000)
        for start in range(0, len(interruption), len(quiet)):
            yield interruption[start : start + len(quiet)]
            await asyncio.sleep(CHUNK_MS / 1000)
        while True:
            yield quiet
            await asyncio.sleep(CHUNK_MS / 1000)

    seen: list[ServerEvent] = []

    def observe(event: ServerEvent) -> None:
        seen.append(event)
        if isinstance(event, AudioDelta):
            first_audio.set()

    player = SimulatedPlayer()
    async with RealtimeClient(running_server.url, api_key=API_KEY) as client:
        await asyncio.wait_for(
            converse(
                client,
                user(),
                player,
                observe,
                until=lambda event: isinstance(event, ItemTruncated),
            ),
            EVENT_TIMEOUT_S,
        )
    gate.set()
    kinds = [type(event) for event in seen]
    truncated = seen[-1]
    assert isinstance(truncated, ItemTruncated)
    # the second speech_started is the interruption; the server cancelled the reply on it
    interrupted_at = len(kinds) - 1 - kinds[::-1].index(SpeechStarted)
    done = [e for e in seen[interrupted_at:] if isinstance(e, ResponseDone)]
    assert done and done[0].status == "cancelled"
    # only the paused first chunk was ever sent, so what played is at most that
    assert 0 < truncated.audio_end_ms <= FIRST_CHUNK_MS
    assert player.item_id is None  # playback stopped
    assert running_server.responder.closed_early == 1
