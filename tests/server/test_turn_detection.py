"""Turn detection over a real socket: both speech classifiers, and semantic_vad with the real
end-of-turn model (Smart Turn, from its wheel) running off the event loop; what it measures
shows in /metrics."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from websockets.asyncio.client import connect

from server.settings import Settings
from tests.server.test_app import metric_samples, url
from tests.support.serving import recv_until
from tests.support.speech import appends, spoken

APPEND_S = 0.02  # appends paced as a microphone sends them


async def _spoken_turn(
    address: str, turn_detection: dict | None = None, realtime: bool = False, tail_ms: int = 2500
) -> list[dict]:
    async with connect(url(address)) as ws:
        await recv_until(ws, "session.created")
        if turn_detection is not None:
            session = {"audio": {"input": {"turn_detection": turn_detection}}}
            await ws.send(json.dumps({"type": "session.update", "session": session}))
            updated = await recv_until(ws, "session.updated")
            echoed = updated[-1]["session"]["audio"]["input"]["turn_detection"]
            assert echoed["type"] == turn_detection["type"]
        for message in appends(spoken("what is seven times six", tail_ms=tail_ms)):
            await ws.send(message)
            if realtime:
                await asyncio.sleep(APPEND_S)
        return await recv_until(ws, "response.done")


@pytest.mark.parametrize("vad", ["webrtc", "silero"])
async def test_either_classifier_finds_the_turn(make_server, vad) -> None:
    async with make_server(Settings(vad=vad)) as address:
        events = await _spoken_turn(address)
    kinds = [e["type"] for e in events]
    assert kinds.count("input_audio_buffer.speech_started") == 1
    assert kinds.count("input_audio_buffer.committed") == 1
    assert events[-1]["response"]["status"] == "completed"


async def test_semantic_vad_ends_the_turn_with_the_end_of_turn_model(make_server) -> None:
    # A server whose default is semantic_vad loads the model before the first session; the
    # question is followed by 1.2 s of silence, less than eagerness high's 2 s cap, so the turn
    # can only have ended on the model's word.
    settings = Settings(vad="silero", turn_detection="semantic_vad")
    async with make_server(settings) as address:
        turn_detection = {"type": "semantic_vad", "eagerness": "high"}
        events = await _spoken_turn(address, turn_detection, realtime=True, tail_ms=1200)
        async with httpx.AsyncClient() as http:
            samples = metric_samples((await http.get(f"http://{address}/metrics")).text)
    kinds = [e["type"] for e in events]
    assert kinds.count("input_audio_buffer.committed") == 1
    assert events[-1]["response"]["status"] == "completed"
    assert samples[("realtime_end_of_turn_model_seconds_count", ())] >= 1
    detector = (("detector", "semantic_vad"),)
    assert samples[("realtime_endpoint_delay_seconds_count", detector)] == 1


async def test_a_server_can_default_to_semantic_vad(make_server) -> None:
    async with make_server(Settings(turn_detection="semantic_vad")) as address:
        async with connect(url(address)) as ws:
            created = json.loads(await ws.recv())
    detection = created["session"]["audio"]["input"]["turn_detection"]
    assert detection == {
        "type": "semantic_vad",
        "eagerness": "auto",
        "create_response": True,
        "interrupt_response": True,
        "merge_window_ms": 1000,
    }


async def test_the_servers_silence_window_and_merge_window_apply_to_new_sessions(
    make_server,
) -> None:
    settings = Settings(silence_duration_ms=250, merge_window_ms=0)
    async with make_server(settings) as address:
        async with connect(url(address)) as ws:
            created = json.loads(await ws.recv())
    detection = created["session"]["audio"]["input"]["turn_detection"]
    assert detection["silence_duration_ms"] == 250 and detection["merge_window_ms"] == 0


def test_a_silence_or_merge_window_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="merge_window_ms"):
        Settings(merge_window_ms=-1).check()
    with pytest.raises(ValueError, match="silence_duration_ms"):
        Settings(silence_duration_ms=100_000).check()
