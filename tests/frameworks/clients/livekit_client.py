"""livekit-agents' OpenAI RealtimeModel at its defaults against our server, two ways:

- `--mode agent_session`: an AgentSession with custom audio input and output and no room (the
  agent declares `calculate` with livekit's `@function_tool`; the session runs it, sends its
  output and asks for the spoken reply itself);
- `--mode realtime_session`: the RealtimeSession driven directly, as the AgentSession would:
  audio pushed in, generations read out, tool outputs sent with `update_chat_ctx` and
  `generate_reply`, barge-in with `interrupt` and `truncate`.

Run in the framework's own environment (.venv-livekit):

    python livekit_client.py --base ws://127.0.0.1:PORT --mode agent_session --scenario turn \
        --question q.wav

Only `base_url` and `api_key` are given to RealtimeModel; every session setting is livekit's
default (semantic_vad, gpt-4o-mini-transcribe, voice marin, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from common import (
    CALCULATE_DESCRIPTION,
    CONNECT_TIMEOUT_S,
    RATE,
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
    wait_for,
)
from livekit import rtc
from livekit.agents import Agent, AgentSession, function_tool, io, llm
from livekit.plugins import openai

INSTRUCTIONS = "You answer spoken arithmetic questions. Use the calculate tool."


@function_tool(name="calculate", description=CALCULATE_DESCRIPTION)
async def calculate_tool(expression: str) -> str:
    """Evaluate an arithmetic expression.

    Args:
        expression: the expression, e.g. "7 * 6".
    """
    result = calculate(expression)
    emit("tool_call", name="calculate", arguments={"expression": expression}, result=result)
    return result


def frame_of(pcm: bytes) -> rtc.AudioFrame:
    return rtc.AudioFrame(pcm, RATE, 1, len(pcm) // 2)


class MicrophoneInput(io.AudioInput):
    """AgentSession audio input fed by `Microphone` in real time."""

    def __init__(self, mic: Microphone) -> None:
        super().__init__(label="test microphone")
        self._chunks = mic.chunks()

    async def __anext__(self) -> rtc.AudioFrame:
        return frame_of(await self._chunks.__anext__())


class SpeakerOutput(io.AudioOutput):
    """AgentSession audio output that plays into `Speaker` and reports, like a real sink, how
    much of each segment was heard when it finishes or is cleared."""

    def __init__(self, speaker: Speaker, progress: Progress) -> None:
        super().__init__(
            label="test speaker",
            capabilities=io.AudioOutputCapabilities(pause=False),
            sample_rate=RATE,
        )
        self._speaker = speaker
        self._progress = progress
        self._segment_started = False
        self._segments = 0
        self._interrupted = asyncio.Event()
        self._waiter: asyncio.Task[None] | None = None

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        if not self._segment_started:
            self._segment_started = True
            self._segments += 1
            self.on_playback_started(created_at=time.time())
        self._speaker.write(bytes(frame.data), self._segments)

    def flush(self) -> None:
        super().flush()
        if self._segment_started:
            self._segment_started = False
            self._interrupted.clear()
            self._waiter = asyncio.create_task(self._wait_for_playout())

    def clear_buffer(self) -> None:
        self._interrupted.set()

    async def _wait_for_playout(self) -> None:
        await wait_for(lambda: self._interrupted.is_set() or not self._speaker.playing, 3600)
        interrupted = self._interrupted.is_set() and self._speaker.playing
        heard = self._speaker.clear() if interrupted else self._speaker.played_ms
        if interrupted:
            emit("interrupted", played_ms=heard)
            self._progress.interrupted = True
        self.on_playback_finished(playback_position=heard / 1000, interrupted=interrupted)


def user_transcripts(chat_ctx: llm.ChatContext) -> list[str]:
    """The user messages with text in a livekit chat context."""
    return [
        item.text_content
        for item in chat_ctx.items
        if item.type == "message" and item.role == "user" and item.text_content
    ]


def describe(chat_ctx: llm.ChatContext) -> list[dict[str, Any]]:
    return json.loads(json.dumps(chat_ctx.to_dict(exclude_image=True), default=str))


def model(base: str) -> openai.realtime.RealtimeModel:
    """The plugin's RealtimeModel with nothing but the server's address and a key."""
    return openai.realtime.RealtimeModel(
        base_url=base.replace("ws://", "http://") + "/v1", api_key="sk-framework-test"
    )


async def run_agent_session(args: Any, mic: Microphone, speaker: Speaker) -> None:
    progress = Progress()
    tools = [calculate_tool] if args.scenario == "tool" else []
    agent = Agent(instructions=INSTRUCTIONS, tools=tools)
    realtime_model = model(args.base)
    session: AgentSession[None] = AgentSession(llm=realtime_model)
    session.input.audio = MicrophoneInput(mic)
    session.output.audio = SpeakerOutput(speaker, progress)
    errors: list[str] = []

    @session.on("error")
    def on_error(event: Any) -> None:
        errors.append(str(event.error))
        emit("framework_error", error=str(event.error)[:1000])

    @session.on("agent_state_changed")
    def on_state(event: Any) -> None:
        if event.old_state == "speaking":
            progress.responses_done += 1

    @session.on("function_tools_executed")
    def on_tools(event: Any) -> None:
        # a tool reply is a generation without speech: count it as a finished reply
        progress.responses_done += 1

    @session.on("conversation_item_added")
    def on_item(event: Any) -> None:
        progress.user_transcript = " ".join(user_transcripts(session.history))

    async with asyncio.timeout(CONNECT_TIMEOUT_S):
        await session.start(agent)
    emit("connected")
    try:
        await drive(args, mic, speaker, progress)
    finally:
        mic.closed = True
        emit(
            "summary",
            user_transcripts=user_transcripts(session.history),
            history=describe(session.history),
            responses_done=progress.responses_done,
            interrupted=progress.interrupted,
            errors=errors,
        )
        await session.aclose()
        await realtime_model.aclose()


async def run_realtime_session(args: Any, mic: Microphone, speaker: Speaker) -> None:
    progress = Progress()
    realtime_model = model(args.base)
    session = realtime_model.session()
    errors: list[str] = []
    playing: dict[str, Any] = {}  # the message being played: its id
    background: set[asyncio.Task[Any]] = set()
    if args.scenario == "tool":
        await session.update_tools([calculate_tool])

    def spawn(coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        background.add(task)
        task.add_done_callback(background.discard)

    async def play(generation: llm.GenerationCreatedEvent) -> None:
        async for message in generation.message_stream:
            playing["id"] = message.message_id
            async for frame in message.audio_stream:
                speaker.write(bytes(frame.data), message.message_id)
        calls = [call async for call in generation.function_stream]
        for call in calls:
            await answer(call)
        progress.responses_done += 1

    async def answer(call: llm.FunctionCall) -> None:
        output = await calculate_tool(**json.loads(call.arguments or "{}"))
        chat_ctx = session.chat_ctx.copy()
        chat_ctx.items.append(
            llm.FunctionCallOutput(
                call_id=call.call_id, name=call.name, output=output, is_error=False
            )
        )
        await session.update_chat_ctx(chat_ctx)
        session.generate_reply()

    def on_generation(generation: llm.GenerationCreatedEvent) -> None:
        spawn(play(generation))

    def on_speech_started(_: Any) -> None:
        # what the AgentSession does on barge-in: stop playing, tell the server what was heard
        if speaker.playing and "id" in playing:
            heard = speaker.clear()
            session.interrupt()
            session.truncate(
                message_id=playing["id"], modalities=["audio"], audio_end_ms=int(heard)
            )
            emit("interrupted", played_ms=heard)
            progress.interrupted = True

    def on_transcript(event: llm.InputTranscriptionCompleted) -> None:
        if event.is_final:
            progress.user_transcript = " ".join(user_transcripts(session.chat_ctx))

    def on_error(event: llm.RealtimeModelError) -> None:
        errors.append(str(event.error))
        emit("framework_error", error=str(event.error)[:1000])

    session.on("generation_created", on_generation)
    session.on("input_speech_started", on_speech_started)
    session.on("input_audio_transcription_completed", on_transcript)
    session.on("error", on_error)

    async def feed() -> None:
        async for chunk in mic.chunks():
            session.push_audio(frame_of(chunk))

    feeding = asyncio.create_task(feed())
    emit("connected")
    try:
        await drive(args, mic, speaker, progress)
    finally:
        mic.closed = True
        feeding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeding
        emit(
            "summary",
            user_transcripts=user_transcripts(session.chat_ctx),
            history=describe(session.chat_ctx),
            responses_done=progress.responses_done,
            interrupted=progress.interrupted,
            errors=errors,
        )
        await session.aclose()
        await realtime_model.aclose()


async def main() -> None:
    args = parse_args(
        lambda parser: parser.add_argument(
            "--mode", choices=("agent_session", "realtime_session"), required=True
        )
    )
    asyncio.get_running_loop().set_exception_handler(loop_exception_handler)
    mic, speaker = Microphone(), Speaker()
    runner = run_agent_session if args.mode == "agent_session" else run_realtime_session
    await runner(args, mic, speaker)


if __name__ == "__main__":
    capture_logging()
    install_excepthook()
    asyncio.run(main())
