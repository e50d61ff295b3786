"""Cancel then disconnect, 300 times, against the real model side (the tiny checkpoint through
the torch engine and espeak-ng): nothing may be left behind. Before the fix, the second
cancellation (the disconnect) cut `ReplyStream.stop()` in half in 37 of 40 tries, leaking the
speech task ("Task was destroyed but it is pending") and the engine sequences."""

from __future__ import annotations

import asyncio
import gc
import json
import logging

import pytest
from websockets.asyncio.client import connect

from streaming.responder import Responder
from tests.server.test_hardening import eventually, guarded, metrics_of, spoken_turn, ws_url
from tests.support.serving import recv_until

DROPS = 300
# Where each drop cuts the reply: as soon as it exists, once its text flows, once it speaks.
CUT_AFTER = (
    "response.created",
    "response.output_audio_transcript.delta",
    "response.output_audio.delta",
)
TEXT_ITEM = json.dumps(
    {
        "type": "conversation.item.create",
        "item": {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "what is seven times six"}],
        },
    }
)


@pytest.fixture
def responder(model_responder: Responder) -> Responder:
    return model_responder


async def drop(address: str, index: int) -> None:
    """Start a reply, cut it at one of `CUT_AFTER`, then (every other time after a
    `response.cancel`) vanish without a close frame."""
    ws = await connect(ws_url(address))
    await recv_until(ws, "session.created")
    await ws.send(TEXT_ITEM)
    await ws.send(json.dumps({"type": "response.create"}))
    seen = await recv_until(ws, CUT_AFTER[index % len(CUT_AFTER)])
    if seen[-1]["type"] == "response.done":  # pragma: no cover - a reply shorter than its cut
        raise AssertionError("the reply ended before it could be cut")
    if index % 2 == 0:
        await ws.send(json.dumps({"type": "response.cancel"}))
    ws.transport.abort()  # a disconnect: no close handshake


async def test_cancel_then_disconnect_leaks_nothing(
    responder: Responder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="asyncio")
    engine = responder.engine  # type: ignore[attr-defined]
    async with guarded(responder=responder) as (address, app):
        async with connect(ws_url(address)) as ws:  # warm up: the first reply loads workers
            await recv_until(ws, "session.created")
            await ws.send(TEXT_ITEM)
            await ws.send(json.dumps({"type": "response.create"}))
            await recv_until(ws, "response.done")
        await eventually(lambda: app.state.active_sessions == 0)
        baseline = len(asyncio.all_tasks())
        for index in range(DROPS):
            await drop(address, index)
        await eventually(lambda: app.state.active_sessions == 0)
        await eventually(lambda: not engine.active_sequences)  # every sequence ended or cancelled
        await eventually(lambda: len(asyncio.all_tasks()) <= baseline)
        samples = await metrics_of(address)
        async with connect(ws_url(address)) as ws:  # and the server still talks
            await recv_until(ws, "session.created")
            await spoken_turn(ws, statuses=("completed", "incomplete"))
    gc.collect()
    destroyed = [r for r in caplog.records if "Task was destroyed" in r.getMessage()]
    assert destroyed == []
    by_status = {
        dict(labels)["status"]: value
        for (name, labels), value in samples.items()
        if name == "realtime_responses_total"
    }
    # every reply counted once: cut by the cancel or the disconnect (cancelled), or, where the
    # short reply of the tiny model ended first, by its own end
    assert sum(by_status.values()) == DROPS + 1, by_status  # and the warm-up's
    assert by_status["cancelled"] >= DROPS / 2, by_status
