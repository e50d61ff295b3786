"""GPT-Live over real sockets on 127.0.0.1 with the official `openai` SDK's `client.live.connect()`:
the protocol with the test responder (auth, a spoken turn, metrics, closing), and a spoken
question answered by the shipped embedded model."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from openai import AsyncOpenAI
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from server.app import create_app
from server.settings import Settings
from streaming.responder import (
    ResponseEvent,
    ResponseFinished,
    ResponseRequest,
    ToolCallDelta,
    ToolCalled,
)
from streaming.tool_calls import ToolCall
from tests.server.espeak_responder import DEFAULT_REPLY, FixedReplyResponder
from tests.server.protocol.test_live import check_live_parses
from tests.server.test_app import metric_samples
from tests.support.presets import CALCULATE
from tests.support.serving import EVENT_TIMEOUT_S, running
from tests.support.speech import BARGE_IN_LEAD_MS, appends, spoken

KEY = "sk-live-test"


def sdk_client(address: str, key: str = KEY) -> AsyncOpenAI:
    return AsyncOpenAI(api_key=key, websocket_base_url=f"ws://{address}/v1")


async def ask(connection: Any, question: str) -> list[Any]:
    """Speak `question` into a started session; its events until the reply's usage update."""
    for message in appends(spoken(question)):
        await connection.session.input_audio.append(audio=json.loads(message)["audio"])
    events = []
    async with asyncio.timeout(EVENT_TIMEOUT_S):
        async for event in connection:
            events.append(event)
            if event.type == "session.usage.updated":
                return events
    raise AssertionError("the connection ended before the reply")


def said(events: list[Any]) -> str:
    return "".join(e.delta for e in events if e.type == "session.output_transcript.delta")


async def test_the_sdk_holds_a_spoken_turn_and_closes(make_server) -> None:
    async with make_server(Settings(api_keys=(KEY,))) as address:
        async with sdk_client(address).live.connect() as connection:
            await connection.session.start(
                session={"model": "gpt-live-1", "instructions": "You are a calculator."},
                event_id="start",
            )
            started = await connection.recv()
            assert started.type == "session.started", started
            assert started.client_event_id == "start"
            check_live_parses(started.model_dump(mode="json", exclude_unset=True))
            events = await ask(connection, "what is seven times six")
            kinds = {e.type for e in events}
            assert "error" not in kinds, [e for e in events if e.type == "error"]
            assert {"session.output_audio.delta", "session.output_transcript.delta"} <= kinds
            audio = b"".join(
                base64.b64decode(e.delta) for e in events if e.type == "session.output_audio.delta"
            )
            assert len(audio) > 24_000 * 2 and said(events) == DEFAULT_REPLY
            for event in events:  # strictly, as the sans-I/O tests check them
                check_live_parses(event.model_dump(mode="json", exclude_unset=True))
            await connection.session.close(event_id="bye")
            async with asyncio.timeout(EVENT_TIMEOUT_S):
                closed = [e async for e in connection]
            assert closed[-1].type == "session.closed" and closed[-1].reason == "close_requested"
        async with httpx.AsyncClient() as http:
            headers = {"Authorization": f"Bearer {KEY}"}
            text = (await http.get(f"http://{address}/metrics", headers=headers)).text
    samples = metric_samples(text)
    assert samples[("realtime_responses_total", (("status", "completed"),))] == 1
    assert samples[("realtime_sessions_total", ())] == 1
    latency = [v for (name, _), v in samples.items() if name.endswith("latency_seconds_count")]
    assert sum(latency) == 1  # the first audio of the reply, measured as it was written


async def test_live_takes_the_same_keys_as_realtime(make_server) -> None:
    async with make_server(Settings(api_keys=(KEY,))) as address:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"ws://{address}/v1/live/sessions"):
                pass
        assert refused.value.response.status_code == 401
        wrong = {"Authorization": "Bearer sk-wrong"}
        with pytest.raises(InvalidStatus):
            async with connect(f"ws://{address}/v1/live/sessions", additional_headers=wrong):
                pass
        # a client secret minted for the server's sessions opens a Live session too
        async with httpx.AsyncClient() as http:
            minted = await http.post(
                f"http://{address}/v1/realtime/client_secrets",
                headers={"Authorization": f"Bearer {KEY}"},
                json={},
            )
        secret = minted.json()["value"]
        async with sdk_client(address, secret).live.connect() as connection:
            await connection.session.start(session={"model": "gpt-live-1"})
            assert (await connection.recv()).type == "session.started"


async def test_one_bad_event_is_one_error_and_the_session_goes_on(make_server) -> None:
    async with make_server() as address:
        async with connect(f"ws://{address}/v1/live/sessions") as ws:
            await ws.send(json.dumps({"type": "session.update", "event_id": "early"}))
            error = json.loads(await ws.recv())
            assert error["type"] == "error" and error["error"]["client_event_id"] == "early"
            await ws.send(json.dumps({"type": "session.start", "session": {"model": "m"}}))
            assert json.loads(await ws.recv())["type"] == "session.started"
            await ws.send(json.dumps({"type": "session.input_audio.append", "audio": "**"}))
            assert json.loads(await ws.recv())["error"]["code"] == "invalid_base64"
            await ws.send(json.dumps({"type": "session.input_audio.mute", "event_id": "m"}))
            muted = json.loads(await ws.recv())
            assert muted == {**muted, "type": "session.input_audio.muted", "client_event_id": "m"}


async def test_a_spoken_question_is_answered_by_the_shipped_model(shipped) -> None:
    async with running(create_app(shipped, Settings())) as address:
        async with sdk_client(address).live.connect() as connection:
            await connection.session.start(session={"model": "gpt-live-1"})
            assert (await connection.recv()).type == "session.started"
            events = await ask(connection, "what is seven times six")
    errors = [e for e in events if e.type == "error"]
    assert not errors, errors
    answer = said(events)
    assert "42" in answer or "forty two" in answer.lower().replace("-", " "), answer


async def test_a_barge_in_stops_the_voice_on_the_wire(make_server) -> None:
    """The reply is made at once, but its audio goes out at the pace it plays: when the user
    speaks over it, the rest never leaves the server (GPT-Live clients have no clear)."""
    async with make_server() as address:
        async with sdk_client(address).live.connect() as connection:
            await connection.session.start(session={"model": "gpt-live-1"})
            assert (await connection.recv()).type == "session.started"
            for message in appends(spoken("what is seven times six")):
                await connection.session.input_audio.append(audio=json.loads(message)["audio"])
            events = []
            async with asyncio.timeout(EVENT_TIMEOUT_S):
                async for event in connection:
                    events.append(event)
                    if event.type == "session.output_audio.delta":
                        break
            stop = spoken("stop", lead_ms=BARGE_IN_LEAD_MS, tail_ms=1000)
            for message in appends(stop):
                await connection.session.input_audio.append(audio=json.loads(message)["audio"])
            async with asyncio.timeout(EVENT_TIMEOUT_S):
                async for event in connection:
                    events.append(event)
                    if event.type == "session.usage.updated":
                        break
    assert not [e for e in events if e.type == "error"]
    heard = said(events)
    assert heard and DEFAULT_REPLY.startswith(heard) and heard != DEFAULT_REPLY, heard
    audio = b"".join(
        base64.b64decode(e.delta) for e in events if e.type == "session.output_audio.delta"
    )
    full_ms = len(spoken(DEFAULT_REPLY, lead_ms=0, tail_ms=0)) * 1000 // 24_000
    assert len(audio) // 48 < full_ms * 0.8, (len(audio) // 48, full_ms)


class CallingResponder(FixedReplyResponder):
    """Calls the first tool it is shown when the user has spoken; speaks the fixed reply once a
    tool's output is in (a model trained for tools does this; the shipped one does not)."""

    def respond(self, request: ResponseRequest) -> AsyncIterator[ResponseEvent]:
        if request.tools and request.turns[-1].role == "user":
            return self._call(request.tools[0]["name"])
        return super().respond(request)

    async def _call(self, name: str) -> AsyncIterator[ResponseEvent]:
        arguments = '{"expression": "7 * 6"}' if name == "calculate" else '{"task": "7 * 6"}'
        yield ToolCallDelta(0, name, arguments)
        yield ToolCalled(0, ToolCall(name, arguments))
        yield ResponseFinished(input_tokens=10, reasoning_tokens=0, answer_tokens=9)


@pytest.mark.parametrize("mode", ["client", "responses"])
async def test_a_delegation_over_the_socket(make_server, mode: str) -> None:
    delegation: dict[str, Any] = {"type": "client"}
    if mode == "responses":
        delegation = {"type": "responses", "responses": {"model": "m", "tools": [CALCULATE]}}
    async with make_server(responder_=CallingResponder()) as address:
        async with sdk_client(address).live.connect() as connection:
            await connection.session.start(
                session={"model": "gpt-live-1", "delegation": delegation}
            )
            assert (await connection.recv()).type == "session.started"
            events = await ask(connection, "what is seven times six")
            [created] = [e for e in events if e.type == "session.delegation.created"]
            assert created.delegation.target == mode
            if mode == "client":  # the application answers; the voice says it
                await connection.session.commentary.append(
                    content="42", delegation_id=created.delegation.id
                )
            else:  # the backend's call, run by the application; then the backend goes on
                calls = [
                    e.event["item"]
                    for e in events
                    if e.type == "response.event" and e.event["type"] == "response.output_item.done"
                ]
                assert [call["name"] for call in calls] == ["calculate"]
                item = {"type": "function_call_output", "call_id": calls[0]["call_id"]}
                await connection.response.item.create(item={**item, "output": "42"})
                await connection.response.create()
            answer = []
            async with asyncio.timeout(EVENT_TIMEOUT_S):
                async for event in connection:
                    answer.append(event)
                    if event.type == "session.usage.updated":
                        break
    assert not [e for e in events + answer if e.type == "error"]
    assert said(answer) == DEFAULT_REPLY
