"""A question with a pause in it, over a real socket, with the official `openai` SDK, answered
by the shipped embedded model: the pause closes the turn (a 300 ms silence window), the user
goes on, and the server merges the two parts into one question with one right answer."""

from __future__ import annotations

import asyncio
import base64

import httpx
import numpy as np
from openai import AsyncOpenAI

from benchmarks.turns import with_pauses
from server.app import create_app
from server.settings import Settings
from tests.server.test_app import metric_samples
from tests.support.serving import EVENT_TIMEOUT_S, running
from tts.espeak import DEFAULT_RATE_WPM

RATE = 24_000
CHUNK_MS = 20


def paused_question(marked: str, pause_ms: int) -> np.ndarray:
    """One sentence spoken in one go (its intonation says it goes on), with silence cut in at
    the "|": a person who pauses mid-question."""
    audio = with_pauses(marked, "en-us", DEFAULT_RATE_WPM, [pause_ms])
    silence = lambda ms: np.zeros(RATE * ms // 1000, np.int16)  # noqa: E731
    speech = (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)
    return np.concatenate([silence(300), speech, silence(1200)])


async def test_a_paused_question_gets_one_right_answer_and_one_user_item(shipped) -> None:
    audio = paused_question("what is nineteen | minus eight", pause_ms=700)
    async with running(create_app(shipped, Settings())) as address:
        client = AsyncOpenAI(api_key="unused", websocket_base_url=f"ws://{address}/v1")
        async with client.realtime.connect(model="step-audio-r1") as connection:
            await connection.session.update(
                session={
                    "type": "realtime",
                    "audio": {
                        "input": {
                            "turn_detection": {"type": "server_vad", "silence_duration_ms": 300}
                        }
                    },
                }
            )
            events = await asyncio.wait_for(_speak_and_listen(connection, audio), EVENT_TIMEOUT_S)
            committed = [e.item_id for e in events if e.type == "input_audio_buffer.committed"]
            deleted = [e.item_id for e in events if e.type == "conversation.item.deleted"]
            done = [e.response for e in events if e.type == "response.done"]
            assert len(committed) == 2 and committed[0] in deleted  # the early turn left
            assert done[-1].status == "completed" and len(done) == 2
            answer = done[-1].output[0].content[0].transcript  # type: ignore[index,union-attr]
            assert answer is not None and ("11" in answer or "eleven" in answer.lower()), answer
            await connection.conversation.item.retrieve(item_id=committed[-1])
            retrieved = await _next(connection, "conversation.item.retrieved")
            assert retrieved.item.role == "user" and retrieved.item.id == committed[-1]
            await connection.conversation.item.retrieve(item_id=committed[0])
            error = await _next(connection, "error")
            assert error.error.code == "item_retrieve_invalid_item_id"
        async with httpx.AsyncClient() as http:
            samples = metric_samples((await http.get(f"http://{address}/metrics")).text)
        assert samples[("realtime_turn_merges_total", (("detector", "server_vad"),))] == 1
        assert samples[("realtime_merge_heard_seconds_count", ())] == 1


async def _speak_and_listen(connection, audio: np.ndarray) -> list:  # noqa: ANN001
    """Stream `audio` at the pace of a microphone, then read until a completed response."""
    events: list = []
    step = RATE * CHUNK_MS // 1000

    async def microphone() -> None:
        for i in range(0, len(audio), step):
            chunk = audio[i : i + step].astype("<i2").tobytes()
            await connection.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
            await asyncio.sleep(CHUNK_MS / 1000)

    sender = asyncio.create_task(microphone())
    answering, finished = None, set()  # the response to the latest commit; those done
    try:
        while not (sender.done() and answering in finished):
            try:
                event = await asyncio.wait_for(connection.recv(), 0.1)
            except TimeoutError:
                continue
            events.append(event)
            if event.type == "input_audio_buffer.committed":
                answering = None
            elif event.type == "response.created":
                answering = event.response.id
            elif event.type == "response.done":
                finished.add(event.response.id)
    finally:
        sender.cancel()
    return events


async def _next(connection, type_: str):  # noqa: ANN001, ANN202
    async for event in connection:
        if event.type == type_:
            return event
    raise AssertionError(f"the connection ended before {type_}")
