"""The server end to end with `--engine vllm` on the embedded default model: `step-realtime serve`
in its own process (vLLM's CPU build, for real), a spoken turn through the official `openai`
SDK, barge-in, every reasoning effort, and 16 concurrent sessions."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from openai import AsyncOpenAI
from openai.types.realtime import (
    ResponseAudioDeltaEvent,
    ResponseAudioTranscriptDeltaEvent,
    ResponseDoneEvent,
)
from websockets.asyncio.client import connect

from benchmarks.server_process import REPOSITORY, free_port, stop_process
from streaming.responder import REASONING_EFFORTS
from tests.server.test_app import url
from tests.support.serving import EVENT_TIMEOUT_S, recv_until
from tests.support.speech import BARGE_IN_LEAD_MS, appends, spoken

CONCURRENT_SESSIONS = 16
# vLLM's start (engine core and worker processes, weights, profiling) plus the audio side's
# load; generous for a busy two-core machine. Only a hang fails on it.
START_TIMEOUT_S = 600
POLL_S = 0.25
STOP_TIMEOUT_S = 30
SETTLE_S = 5.0  # the most a cancelled reply may take to leave the engine's books


@pytest.fixture(scope="module")
def vllm_server() -> Iterator[tuple[str, list[int]]]:
    """`step-realtime serve --engine vllm` on a free port; yields its address and the /readyz
    statuses seen until it was ready."""
    port = free_port()
    command = [
        *(sys.executable, "-m", "server", "serve", "--engine", "vllm"),
        *("--port", str(port), "--max-sessions", str(CONCURRENT_SESSIONS)),
        *("--max-sequences", str(CONCURRENT_SESSIONS), "--max-seq-len", "2048"),
        *("--enforce-eager", "--cpu-kv-cache-gib", "1", "--log-level", "warning"),
    ]
    process = subprocess.Popen(command, cwd=REPOSITORY)
    try:
        statuses = wait_until_ready(f"http://127.0.0.1:{port}/readyz", process)
        yield f"127.0.0.1:{port}", statuses
    finally:
        stop_process(process, STOP_TIMEOUT_S)


def wait_until_ready(address: str, process: subprocess.Popen[bytes]) -> list[int]:
    statuses: list[int] = []
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the server exited with code {process.returncode}"
        status = readyz(address)[0]
        if status is not None and (not statuses or statuses[-1] != status):
            statuses.append(status)
        if status == 200:
            return statuses
        time.sleep(POLL_S)
    raise AssertionError(f"not ready within {START_TIMEOUT_S} s; /readyz said {statuses}")


def readyz(address: str) -> tuple[int | None, dict]:
    try:
        with urllib.request.urlopen(address, timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except OSError:
        return None, {}


def test_ready_only_after_the_engine_warmed_up(vllm_server) -> None:
    address, statuses = vllm_server
    assert statuses[0] == 503 and statuses[-1] == 200  # served, but not ready, while warming
    _, body = readyz(f"http://{address}/readyz")
    engine = body["engine"]
    assert engine["healthy"] is True
    assert engine["max_sequences"] == CONCURRENT_SESSIONS
    assert engine["max_context"] == 2048
    assert engine["max_cached_tokens"] > 2048


async def test_openai_sdk_spoken_turn(vllm_server) -> None:
    address, _ = vllm_server
    client = AsyncOpenAI(api_key="unused", websocket_base_url=f"ws://{address}/v1")
    async with client.realtime.connect(model="step-audio-r1") as connection:
        await connection.recv()  # session.created
        await connection.session.update(
            session={
                "type": "realtime",
                "output_modalities": ["audio"],
                "include": ["response.reasoning_text"],  # type: ignore[list-item]
            }
        )
        for message in appends(spoken("what is seven times six")):
            await connection.input_audio_buffer.append(audio=json.loads(message)["audio"])
        audio, transcript = b"", ""
        while True:
            async with asyncio.timeout(EVENT_TIMEOUT_S):
                event = await connection.recv()
            if isinstance(event, ResponseAudioDeltaEvent):
                audio += base64.b64decode(event.delta)
            elif isinstance(event, ResponseAudioTranscriptDeltaEvent):
                transcript += event.delta
            elif isinstance(event, ResponseDoneEvent):
                break
    assert event.response.status == "completed"
    assert len(audio) > 24_000  # half a second of 24 kHz PCM16 at least
    assert "forty" in transcript.lower() or "42" in transcript, transcript  # it can count


async def test_barge_in_cancels_the_reply_and_frees_the_engine(vllm_server) -> None:
    address, _ = vllm_server
    async with connect(url(address)) as ws:
        await recv_until(ws, "session.created")
        for message in appends(spoken("what is seven times six", tail_ms=600)):
            await ws.send(message)
        before = await recv_until(ws, "response.created")
        for message in appends(
            spoken("stop", lead_ms=BARGE_IN_LEAD_MS, tail_ms=1000)
        ):  # while it replies
            await ws.send(message)
        events = before + await recv_until(ws, "response.done")
    assert events[-1]["response"]["status"] == "cancelled"
    await wait_idle(address)


async def wait_idle(address: str) -> None:
    deadline = time.monotonic() + SETTLE_S
    while True:
        body = (await asyncio.to_thread(readyz, f"http://{address}/readyz"))[1]
        if body["engine"]["active_sequences"] == 0:
            return
        assert time.monotonic() < deadline, f"sequences still running: {body}"
        await asyncio.sleep(POLL_S)


@pytest.mark.parametrize("effort", REASONING_EFFORTS)
async def test_every_reasoning_effort_answers(vllm_server, effort: str) -> None:
    address, _ = vllm_server
    async with connect(url(address)) as ws:
        await recv_until(ws, "session.created")
        update = {"type": "realtime", "reasoning": {"effort": effort}}
        await ws.send(json.dumps({"type": "session.update", "session": update}))
        await recv_until(ws, "session.updated")
        for message in appends(spoken("what is twelve plus nine")):
            await ws.send(message)
        events = await recv_until(ws, "response.done")
    transcript = "".join(
        e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta"
    )
    assert events[-1]["response"]["status"] == "completed", effort
    assert transcript.strip(), effort


async def test_sixteen_concurrent_sessions_complete_their_turns(vllm_server) -> None:
    address, _ = vllm_server
    question = appends(spoken("what is eight times eight"))

    async def one_turn() -> dict:
        async with connect(url(address)) as ws:
            await recv_until(ws, "session.created")
            for message in question:
                await ws.send(message)
            events = await recv_until(ws, "response.done")
            assert any(e["type"] == "response.output_audio.delta" for e in events)
            return events[-1]["response"]

    responses = await asyncio.gather(*(one_turn() for _ in range(CONCURRENT_SESSIONS)))
    assert [r["status"] for r in responses] == ["completed"] * CONCURRENT_SESSIONS
    await wait_idle(address)
