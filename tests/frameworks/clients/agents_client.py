"""The openai-agents SDK's RealtimeAgent / RealtimeRunner at its defaults against our server.

Run in the framework's own environment (.venv-agents):

    python agents_client.py --base ws://127.0.0.1:PORT --scenario turn --question q.wav

Only the URL and the API key are given, as a user pointing the SDK at another Realtime server
does; every session setting is the SDK's default (semantic_vad, gpt-4o-mini-transcribe, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from agents import function_tool
from agents.realtime import RealtimeAgent, RealtimeRunner
from common import (
    CALCULATE_DESCRIPTION,
    CONNECT_TIMEOUT_S,
    Microphone,
    Progress,
    Speaker,
    calculate,
    capture_logging,
    drive,
    emit,
    install_excepthook,
    loop_exception_handler,
    parse_args,
)

INSTRUCTIONS = "You answer spoken arithmetic questions. Use the calculate tool."


@function_tool(name_override="calculate", description_override=CALCULATE_DESCRIPTION)
def calculate_tool(expression: str) -> str:
    """Evaluate an arithmetic expression.

    Args:
        expression: the expression, e.g. "7 * 6".
    """
    result = calculate(expression)
    emit("tool_call", name="calculate", arguments={"expression": expression}, result=result)
    return result


def user_transcripts(history: list[Any]) -> list[str]:
    """The transcripts of the user's audio messages in the session's history."""
    found = []
    for item in history:
        if getattr(item, "type", None) == "message" and getattr(item, "role", None) == "user":
            for part in item.content:
                text = getattr(part, "transcript", None) or getattr(part, "text", None)
                if text:
                    found.append(text)
    return found


def describe(history: list[Any]) -> list[dict[str, Any]]:
    """The history as plain data for the report."""
    return [item.model_dump(exclude={"content": {"__all__": {"audio"}}}) for item in history]


async def main() -> None:
    args = parse_args()
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(loop_exception_handler)
    tools = [calculate_tool] if args.scenario == "tool" else []
    agent: RealtimeAgent[None] = RealtimeAgent(
        name="assistant", instructions=INSTRUCTIONS, tools=tools
    )
    runner = RealtimeRunner(agent)
    session = await runner.run(
        model_config={"url": f"{args.base}/v1/realtime", "api_key": "sk-framework-test"}
    )
    mic, speaker, progress = Microphone(), Speaker(), Progress()
    history: list[Any] = []
    errors: list[str] = []

    async def listen() -> None:
        nonlocal history
        async for event in session:
            if event.type == "audio":
                speaker.write(event.audio.data, event.item_id)
            elif event.type == "audio_interrupted":
                emit("interrupted", played_ms=speaker.clear())
                progress.interrupted = True
            elif event.type == "history_updated":
                history = list(event.history)
                progress.user_transcript = " ".join(user_transcripts(history))
            elif event.type == "error":
                errors.append(str(event.error))
                emit("framework_error", error=str(event.error)[:2000])
            elif event.type == "raw_model_event" and event.data.type == "turn_ended":
                progress.responses_done += 1

    async def speak() -> None:
        async for chunk in mic.chunks():
            await session.send_audio(chunk)

    async with asyncio.timeout(CONNECT_TIMEOUT_S):
        await session.enter()
    emit("connected")
    tasks = [asyncio.create_task(listen()), asyncio.create_task(speak())]
    try:
        await drive(args, mic, speaker, progress)
    finally:
        mic.closed = True
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
        emit(
            "summary",
            user_transcripts=user_transcripts(history),
            history=describe(history),
            responses_done=progress.responses_done,
            interrupted=progress.interrupted,
            errors=errors,
        )
        await session.close()


if __name__ == "__main__":
    capture_logging()
    install_excepthook()
    asyncio.run(main())
