"""End to end over 127.0.0.1: the official `openai` SDK (GA names), and a raw `websockets`
client speaking the beta protocol. The responder is the `responder` fixture: swap it in
conftest.py to run these against the model."""

from __future__ import annotations

import asyncio
import base64
import json

from openai import AsyncOpenAI
from openai.types.realtime import (
    ResponseAudioDeltaEvent,
    ResponseAudioTranscriptDeltaEvent,
    ResponseDoneEvent,
    SessionCreatedEvent,
)
from websockets.asyncio.client import connect

from tests.server.helpers import EVENT_TIMEOUT_S, appends, recv_until, spoken


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
            assert event.response.status == "completed"
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
            assert events[-1]["response"]["output_audio_format"] == "g711_ulaw"
