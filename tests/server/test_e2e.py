"""End to end over 127.0.0.1 against the real model side (the tiny checkpoint through the torch
engine and espeak-ng): the official `openai` SDK (GA names), a raw `websockets` client speaking
the beta protocol, barge-in with truncation of the history, and 16 concurrent sessions."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import pytest
from openai import AsyncOpenAI
from openai.types.realtime import (
    ResponseAudioDeltaEvent,
    ResponseAudioTranscriptDeltaEvent,
    ResponseDoneEvent,
    SessionCreatedEvent,
)
from websockets.asyncio.client import connect

from server.settings import Settings
from streaming.pipeline import ResponderSettings, load_responder
from tests.server.test_app import metric_samples, url
from tests.support.serving import EVENT_TIMEOUT_S, recv_until, running
from tests.support.speech import BARGE_IN_LEAD_MS, appends, spoken

CONCURRENT_SESSIONS = 16


@pytest.fixture
def responder(model_responder):  # noqa: ANN001, ANN201
    """Every test here runs against the model."""
    return model_responder


async def test_openai_sdk_speech_turn(make_server) -> None:
    async with make_server() as address:
        client = AsyncOpenAI(api_key="unused", websocket_base_url=f"ws://{address}/v1")
        async with client.realtime.connect(model="step-audio-r1") as connection:
            created = await connection.recv()
            assert isinstance(created, SessionCreatedEvent)
            await connection.session.update(
                session={
                    "type": "realtime",
                    "output_modalities": ["audio"],
                    "include": ["response.reasoning_text"],  # type: ignore[list-item]
                    "audio": {
                        "input": {
                            "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}
                        }
                    },
                }
            )
            for message in appends(spoken("what is seven times six")):
                await connection.input_audio_buffer.append(audio=json.loads(message)["audio"])
            audio = b""
            transcript = ""
            reasoning = ""
            while True:
                event = await _recv(connection)
                if isinstance(event, ResponseAudioDeltaEvent):
                    audio += base64.b64decode(event.delta)
                elif isinstance(event, ResponseAudioTranscriptDeltaEvent):
                    transcript += event.delta
                elif event.type == "response.reasoning_text.delta":  # our extension event
                    reasoning += event.delta  # type: ignore[union-attr]
                elif isinstance(event, ResponseDoneEvent):
                    break
            # the random tiny model stops at its token limit: "incomplete" is its honest status
            assert event.response.status in {"completed", "incomplete"}
            assert event.response.output[0].content[0].transcript == transcript  # type: ignore
            assert len(audio) > 24_000 * 2 and transcript and reasoning
            # a second, text-only turn on the same connection, with per-response overrides
            await connection.conversation.item.create(
                item={
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "and eight times nine?"}],
                }
            )
            await connection.response.create(response={"output_modalities": ["text"]})
            kinds = []
            while not isinstance(event := await _recv(connection), ResponseDoneEvent):
                kinds.append(event.type)
            assert "response.output_text.delta" in kinds
            assert "response.output_audio.delta" not in kinds


async def _recv(connection):  # noqa: ANN001, ANN202
    async with asyncio.timeout(EVENT_TIMEOUT_S):
        return await connection.recv()


async def test_beta_client_over_raw_websockets(make_server) -> None:
    async with make_server() as address:
        headers = {"OpenAI-Beta": "realtime=v1"}
        uri = f"ws://{address}/v1/realtime?model=step-audio-r1"
        async with connect(uri, additional_headers=headers) as ws:
            created = (await recv_until(ws, "session.created"))[-1]
            assert created["session"]["input_audio_format"] == "pcm16"
            await ws.send(
                json.dumps(
                    {
                        "type": "session.update",
                        "session": {
                            "modalities": ["text", "audio"],
                            "output_audio_format": "g711_ulaw",
                            "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
                        },
                    }
                )
            )
            for message in appends(spoken("what is seven times six")):
                await ws.send(message)
            events = await recv_until(ws, "response.done")
            kinds = {e["type"] for e in events}
            assert {
                "response.audio.delta",
                "response.audio_transcript.delta",
                "response.audio.done",
                "response.audio_transcript.done",
                "conversation.item.created",
            } <= kinds
            assert not {k for k in kinds if "output_audio" in k}
            ulaw = b"".join(
                base64.b64decode(e["delta"]) for e in events if e["type"] == "response.audio.delta"
            )
            assert len(ulaw) > 8_000  # over a second of 8 kHz G.711
            response = events[-1]["response"]
            assert response["output_audio_format"] == "g711_ulaw"
            # usage splits reasoning from answer; the server-side latency split comes along
            usage = response["usage"]
            assert 0 < usage["output_token_details"]["reasoning_tokens"] < usage["output_tokens"]
            assert {"encode", "first_answer_token", "first_tts_chunk"} <= set(
                response["stage_seconds"]
            )


async def test_barge_in_cancels_and_history_keeps_the_played_part(tiny_checkpoint) -> None:
    # A long reply (many tokens), so that it is still being produced when the user speaks.
    responder = load_responder(
        tiny_checkpoint,
        device="cpu",
        dtype="float32",
        max_seq_len=2048,
        settings=ResponderSettings(max_output_tokens=1500),
    )
    try:
        await _barge_in(responder)
    finally:
        await responder.close()


async def _barge_in(responder) -> None:  # noqa: ANN001
    from server.app import create_app

    async with running(create_app(responder, Settings())) as address:
        async with connect(url(address)) as ws:
            await recv_until(ws, "session.created")
            for message in appends(spoken("what is seven times six")):
                await ws.send(message)
            before = await recv_until(ws, "response.output_audio.delta")
            for message in appends(spoken("stop", lead_ms=BARGE_IN_LEAD_MS, tail_ms=1000)):
                await ws.send(message)
            events = before + await recv_until(ws, "response.done")
            done = events[-1]["response"]
            assert done["status"] == "cancelled"
            item_id = done["output"][0]["id"]
            full = "".join(
                e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta"
            )
            sent_ms = sum(
                len(base64.b64decode(e["delta"])) // 48
                for e in events
                if e["type"] == "response.output_audio.delta"
            )
            played_ms = sent_ms // 2  # the client had played half of what it received
            await ws.send(
                json.dumps(
                    {
                        "type": "conversation.item.truncate",
                        "item_id": item_id,
                        "content_index": 0,
                        "audio_end_ms": played_ms,
                    }
                )
            )
            await recv_until(ws, "conversation.item.truncated")
            await ws.send(json.dumps({"type": "conversation.item.retrieve", "item_id": item_id}))
            item = (await recv_until(ws, "conversation.item.retrieved"))[-1]["item"]
            kept = item["content"][0]["transcript"]
            assert full.startswith(kept.rstrip()) and len(kept) < len(full)
            async with httpx.AsyncClient() as http:
                text = (await http.get(f"http://{address}/metrics")).text
    assert metric_samples(text)[("realtime_barge_ins_total", ())] == 1


async def test_concurrent_sessions_complete_their_turns(make_server) -> None:
    question = appends(spoken("what is seven times six"))

    async def one_turn(address: str) -> dict:
        async with connect(url(address)) as ws:
            await recv_until(ws, "session.created")
            for message in question:
                await ws.send(message)
            events = await recv_until(ws, "response.done")
            assert any(e["type"] == "response.output_audio.delta" for e in events)
            return events[-1]["response"]

    async with make_server(Settings(max_sessions=CONCURRENT_SESSIONS)) as address:
        responses = await asyncio.gather(*(one_turn(address) for _ in range(CONCURRENT_SESSIONS)))
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"http://{address}/metrics")).text
    assert len({r["id"] for r in responses}) == CONCURRENT_SESSIONS
    samples = metric_samples(text)
    finished = sum(
        value for (name, labels), value in samples.items() if name == "realtime_responses_total"
    )
    assert finished == CONCURRENT_SESSIONS
    assert samples[("realtime_sessions_total", ())] == CONCURRENT_SESSIONS
    latency = samples[("realtime_first_audio_latency_seconds_count", (("mode", "think_first"),))]
    assert latency == CONCURRENT_SESSIONS
