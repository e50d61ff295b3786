"""The server over real sockets on 127.0.0.1: WebSocket protocol, auth, admission, metrics."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from server.app import create_app
from server.settings import Settings
from tests.server.espeak_responder import FixedReplyResponder
from tests.support.serving import recv_until, running
from tests.support.speech import BARGE_IN_LEAD_MS, appends, spoken

KEY = "sk-test-key"


def url(address: str) -> str:
    return f"ws://{address}/v1/realtime?model=step-audio-r1"


def metric_samples(text: str) -> dict[tuple[str, tuple], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def text_turn(ws) -> list[dict]:
    await ws.send(
        json.dumps(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "what is seven times six"}],
                },
            }
        )
    )
    await ws.send(json.dumps({"type": "response.create"}))
    events = await recv_until(ws, "response.done")
    assert events[-1]["response"]["status"] == "completed"
    return events


async def test_health_and_readiness(make_server) -> None:
    async with make_server() as address, httpx.AsyncClient() as http:
        assert (await http.get(f"http://{address}/healthz")).json() == {"status": "ok"}
        assert (await http.get(f"http://{address}/readyz")).status_code == 200


async def test_audio_turn_over_the_socket_and_metrics(make_server) -> None:
    async with make_server() as address:
        async with connect(url(address)) as ws:
            created = json.loads(await ws.recv())
            assert created["type"] == "session.created"
            assert created["session"]["model"] == "step-audio-r1"
            for message in appends(spoken("what is seven times six")):
                await ws.send(message)
            events = await recv_until(ws, "response.done")
            kinds = [e["type"] for e in events]
            assert kinds[:2] == [
                "input_audio_buffer.speech_started",
                "input_audio_buffer.speech_stopped",
            ]
            assert "response.output_audio.delta" in kinds
            assert not [k for k in kinds if "reasoning" in k]  # only for clients that ask
            assert events[-1]["response"]["status"] == "completed"
            async with httpx.AsyncClient() as http:
                text = (await http.get(f"http://{address}/metrics")).text
    samples = metric_samples(text)
    fpl_count = samples[("realtime_first_audio_latency_seconds_count", (("mode", "think_first"),))]
    assert fpl_count == 1
    assert samples[("realtime_first_audio_latency_seconds_sum", (("mode", "think_first"),))] > 0
    for stage in ("endpoint", "server", "first_tts_chunk"):
        labels = (("mode", "think_first"), ("stage", stage))
        assert samples[("realtime_stage_seconds_count", labels)] == 1
    assert samples[("realtime_sessions_active", ())] == 1
    assert samples[("realtime_sessions_capacity", ())] == 16
    assert samples[("realtime_sessions_total", ())] == 1
    assert samples[("realtime_responses_total", (("status", "completed"),))] == 1
    assert samples[("realtime_audio_in_seconds_total", ())] > 1
    assert samples[("realtime_audio_out_seconds_total", ())] > 1
    assert samples[("realtime_answer_tokens_total", ())] > 0
    assert samples[("realtime_first_audio_latency_target_seconds", ())] == 0.92
    # the default 200 ms speculation started the reply in the 500 ms silence window
    assert samples[("realtime_speculations_total", (("outcome", "used"),))] == 1
    buckets = [
        dict(labels)["le"]
        for (name, labels) in samples
        if name == "realtime_first_audio_latency_seconds_bucket"
    ]
    assert buckets[:3] == ["0.05", "0.1", "0.15"] and "0.92" in buckets and "+Inf" in buckets


# --- bad input over the socket: an error event with a code, and the connection goes on -----


def _event(**fields: object) -> str:
    return json.dumps({"event_id": "e1", **fields})


def _silence_b64(ms: int) -> str:
    return base64.b64encode(np.zeros(24 * ms, "<i2").tobytes()).decode()


MANUAL = _event(type="session.update", session={"audio": {"input": {"turn_detection": None}}})
ASSISTANT_ITEM = _event(
    type="conversation.item.create",
    item={"id": "item_said", "type": "message", "role": "assistant",
          "content": [{"type": "output_audio", "transcript": "hello"}]},
)  # fmt: skip
# (id, messages sent first, the bad message, expected code)
BAD_MESSAGES = [
    ("malformed_json", [], "{oops", "invalid_json"),
    ("binary_frame", [], b"\x00\x01", "invalid_json"),
    ("unknown_type", [], _event(type="nope"), "unknown_event_type"),
    ("missing_field", [], _event(type="conversation.item.truncate", item_id="x"),
     "missing_required_parameter"),
    ("wrong_type", [], _event(type="input_audio_buffer.append", audio=5), "invalid_value"),
    ("unknown_field", [], _event(type="response.cancel", force=True), "unknown_parameter"),
    ("bad_base64", [], _event(type="input_audio_buffer.append", audio="***"), "invalid_base64"),
    ("unsupported_format", [],
     _event(type="session.update",
            session={"audio": {"input": {"format": {"type": "audio/pcm", "rate": 44100}}}}),
     "unsupported_audio_format"),
    ("too_large", [], _event(type="input_audio_buffer.append", audio="A" * 40_000),
     "message_too_large"),
    ("buffer_full", [MANUAL, _event(type="input_audio_buffer.append", audio=_silence_b64(100))],
     _event(type="input_audio_buffer.append", audio=_silence_b64(100)),
     "input_audio_buffer_full"),
    ("commit_empty", [], _event(type="input_audio_buffer.commit"),
     "input_audio_buffer_commit_empty"),
    ("truncate_past_end", [ASSISTANT_ITEM],
     _event(type="conversation.item.truncate", item_id="item_said", content_index=0,
            audio_end_ms=100), "truncate_past_end"),
    ("unknown_item", [], _event(type="conversation.item.delete", item_id="x"),
     "item_delete_invalid_item_id"),
    ("cancel_without_response", [], _event(type="response.cancel"), "response_cancel_not_active"),
]  # fmt: skip
SMALL_LIMITS = Settings(max_message_bytes=32_000, max_input_buffer_seconds=0.15)


@pytest.mark.parametrize(
    ("setup", "message", "code"), [c[1:] for c in BAD_MESSAGES], ids=[c[0] for c in BAD_MESSAGES]
)
async def test_bad_message_over_the_socket(make_server, setup, message, code) -> None:
    async with make_server(SMALL_LIMITS) as address:
        async with connect(url(address)) as ws:
            await recv_until(ws, "session.created")
            for earlier in setup:
                await ws.send(earlier)
            await ws.send(message)
            events = await recv_until(ws, "error")
            assert [e["error"]["code"] for e in events if e["type"] == "error"] == [code]
            if "e1" in str(message):
                assert events[-1]["error"]["event_id"] == "e1"
            await text_turn(ws)  # same connection, a normal turn
            async with httpx.AsyncClient() as http:
                text = (await http.get(f"http://{address}/metrics")).text
    assert metric_samples(text)[("realtime_protocol_errors_total", (("code", code),))] == 1


async def test_response_create_while_active_over_the_socket(make_server) -> None:
    gate = asyncio.Event()
    async with make_server(responder_=FixedReplyResponder(gate=gate)) as address:
        async with connect(url(address)) as ws:
            await recv_until(ws, "session.created")
            await ws.send(json.dumps({"type": "response.create"}))
            await recv_until(ws, "response.output_audio.delta")  # held open by the gate
            await ws.send(_event(type="response.create"))
            error = (await recv_until(ws, "error"))[-1]
            assert error["error"]["code"] == "conversation_already_has_active_response"
            assert error["error"]["event_id"] == "e1"
            gate.set()
            done = (await recv_until(ws, "response.done"))[-1]
            assert done["response"]["status"] == "completed"  # the active one is unharmed
            await text_turn(ws)


# --- auth ----------------------------------------------------------------------------------


async def test_missing_key_is_refused(make_server) -> None:
    async with make_server(Settings(api_keys=(KEY,))) as address:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url(address)):
                pass
        assert refused.value.response.status_code == 401


async def test_wrong_key_is_refused(make_server) -> None:
    async with make_server(Settings(api_keys=(KEY,))) as address:
        with pytest.raises(InvalidStatus):
            async with connect(url(address), additional_headers={"Authorization": "Bearer no"}):
                pass


async def test_bearer_and_subprotocol_keys_are_accepted(make_server) -> None:
    async with make_server(Settings(api_keys=(KEY,))) as address:
        async with connect(
            url(address), additional_headers={"Authorization": f"Bearer {KEY}"}
        ) as ws:
            assert (await recv_until(ws, "session.created"))[-1]["type"] == "session.created"
        protocols = ["realtime", f"openai-insecure-api-key.{KEY}"]
        async with connect(url(address), subprotocols=protocols) as ws:  # type: ignore[arg-type]
            assert ws.subprotocol == "realtime"
            await recv_until(ws, "session.created")


async def test_client_secrets_mint_use_and_expire(responder) -> None:
    app = create_app(responder, Settings(api_keys=(KEY,)))
    async with running(app) as address, httpx.AsyncClient() as http:
        endpoint = f"http://{address}/v1/realtime/client_secrets"
        body = {
            "expires_after": {"anchor": "created_at", "seconds": 60},
            "session": {"type": "realtime", "instructions": "Be brief."},
        }
        assert (await http.post(endpoint, json=body)).status_code == 401  # needs an API key
        minted = await http.post(endpoint, json=body, headers={"Authorization": f"Bearer {KEY}"})
        assert minted.status_code == 200
        secret = minted.json()
        assert secret["value"].startswith("ek_") and secret["expires_at"] > time.time()
        assert secret["session"]["instructions"] == "Be brief."
        headers = {"Authorization": f"Bearer {secret['value']}"}
        async with connect(url(address), additional_headers=headers) as ws:
            created = (await recv_until(ws, "session.created"))[-1]
            assert created["session"]["instructions"] == "Be brief."
        app.state.keys.clock = lambda: time.time() + 61  # the secret's minute has passed
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url(address), additional_headers=headers):
                pass
        assert refused.value.response.status_code == 401


async def test_client_secret_request_is_validated(make_server) -> None:
    async with make_server() as address, httpx.AsyncClient() as http:
        endpoint = f"http://{address}/v1/realtime/client_secrets"
        bad = await http.post(endpoint, json={"session": {"audio": {"output": {"voice": "x"}}}})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_value"
        ttl = await http.post(endpoint, json={"expires_after": {"seconds": 1}})
        assert ttl.status_code == 400
        odd = await http.post(endpoint, json={"expires_after": "soon", "session": 5})
        assert odd.status_code == 400


async def test_concurrent_sessions_each_get_their_reply(make_server) -> None:
    async with make_server() as address:
        async with connect(url(address)) as first, connect(url(address)) as second:
            await recv_until(first, "session.created")
            await recv_until(second, "session.created")
            replies = await asyncio.gather(text_turn(first), text_turn(second))
            ids = {events[-1]["response"]["id"] for events in replies}
            assert len(ids) == 2
            async with httpx.AsyncClient() as http:
                text = (await http.get(f"http://{address}/metrics")).text
    assert metric_samples(text)[("realtime_sessions_active", ())] == 2


# --- admission and lifetime ----------------------------------------------------------------


async def test_session_limit_gives_error_and_1013(make_server) -> None:
    async with make_server(Settings(max_sessions=1)) as address:
        async with connect(url(address)) as first:
            await recv_until(first, "session.created")
            async with connect(url(address)) as second:
                [error] = await recv_until(second, "error")
                assert error["error"]["code"] == "session_limit_reached"
                with pytest.raises(ConnectionClosed) as closed:
                    await second.recv()
                assert closed.value.rcvd.code == 1013
            await text_turn(first)  # the admitted session is unaffected


@pytest.mark.parametrize(
    ("settings", "code"),
    [
        (Settings(idle_timeout_seconds=0.3), "session_idle_timeout"),
        (Settings(max_session_seconds=0.3), "session_expired"),
    ],
)
async def test_idle_and_expired_sessions_are_closed(make_server, settings, code) -> None:
    async with make_server(settings) as address, connect(url(address)) as ws:
        await recv_until(ws, "session.created")
        [error] = await recv_until(ws, "error")
        assert error["error"]["code"] == code
        with pytest.raises(ConnectionClosed):
            await ws.recv()


# --- barge-in ------------------------------------------------------------------------------


async def test_barge_in_cancels_and_closes_the_responder(make_server) -> None:
    gate = asyncio.Event()  # the reply pauses after its first audio until the test barges in
    responder = FixedReplyResponder(gate=gate)
    async with make_server(responder_=responder) as address:
        async with connect(url(address)) as ws:
            await recv_until(ws, "session.created")
            for message in appends(spoken("what is seven times six")):
                await ws.send(message)
            await recv_until(ws, "response.output_audio.delta")
            # after more of the reply than a merge allows (MERGE_MAX_HEARD_MS): a barge-in
            for message in appends(spoken("stop", lead_ms=BARGE_IN_LEAD_MS, tail_ms=1000)):
                await ws.send(message)
            events = await recv_until(ws, "response.done")
            done = events[-1]["response"]
            assert done["status"] == "cancelled"
            assert done["status_details"]["reason"] == "turn_detected"
            item_id = done["output"][0]["id"]
            await ws.send(
                json.dumps(
                    {
                        "type": "conversation.item.truncate",
                        "item_id": item_id,
                        "content_index": 0,
                        "audio_end_ms": 100_000,
                    }
                )
            )
            error = (await recv_until(ws, "error"))[-1]
            assert error["error"]["code"] == "truncate_past_end"
            sent_ms = 0
            for event in events:
                if event["type"] == "response.output_audio.delta":
                    sent_ms += len(base64.b64decode(event["delta"])) // 48
            await ws.send(
                json.dumps(
                    {
                        "type": "conversation.item.truncate",
                        "item_id": item_id,
                        "content_index": 0,
                        "audio_end_ms": sent_ms,
                    }
                )
            )
            # the "stop" turn's own events may come first: its reply starts meanwhile
            truncated = (await recv_until(ws, "conversation.item.truncated"))[-1]
            assert truncated["audio_end_ms"] <= sent_ms
            gate.set()
            await recv_until(ws, "response.done")  # the new turn ("stop") is answered
            async with httpx.AsyncClient() as http:
                text = (await http.get(f"http://{address}/metrics")).text
    assert responder.closed_early == 1
    samples = metric_samples(text)
    assert samples[("realtime_barge_ins_total", ())] == 1
    assert samples[("realtime_responses_total", (("status", "cancelled"),))] == 1


def test_unauthenticated_server_binds_loopback_only() -> None:
    assert Settings().bind_host() == "127.0.0.1"
    assert Settings(api_keys=(KEY,)).bind_host() == "0.0.0.0"
    with pytest.raises(ValueError, match="API key"):
        Settings(host="0.0.0.0").check()
    Settings(host="0.0.0.0", allow_remote_without_auth=True).check()


def test_pcm_helper_is_pcm16() -> None:
    assert (
        np.frombuffer(
            base64.b64decode(json.loads(appends(np.ones(480, np.int16))[0])["audio"]), "<i2"
        ).tolist()
        == [1] * 480
    )
