"""pipecat's OpenAIRealtimeLLMService at its defaults against our server.

Run in the framework's own environment (.venv-pipecat):

    python pipecat_client.py --base ws://127.0.0.1:PORT --scenario turn --question q.wav

The pipeline is the one of pipecat's own realtime example (transport input, user aggregator,
the service, transport output, assistant aggregator), with a virtual sound card as the
transport: a microphone that streams the WAV file in real time and a speaker that plays in real
time. Only `api_key` and `base_url` are given to the service; for the tool scenario the tool is
declared with pipecat's own FunctionSchema and registered with `register_function`.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from common import (
    CALCULATE_DESCRIPTION,
    RATE,
    Microphone,
    Progress,
    Speaker,
    calculate,
    drive,
    emit,
    install_excepthook,
    loop_exception_handler,
    parse_args,
)
from loguru import logger
from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema
from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    ErrorFrame,
    Frame,
    InputAudioRawFrame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    OutputAudioRawFrame,
    StartFrame,
    TTSStartedFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.llm_service import FunctionCallParams
from pipecat.services.openai.realtime.events import (
    AudioConfiguration,
    AudioInput,
    InputAudioTranscription,
    SessionProperties,
)
from pipecat.services.openai.realtime.llm import OpenAIRealtimeLLMService
from pipecat.transports.base_input import BaseInputTransport
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import BaseTransport, TransportParams
from pipecat.workers.runner import WorkerRunner

CALCULATE = FunctionSchema(
    name="calculate",
    description=CALCULATE_DESCRIPTION,
    properties={"expression": {"type": "string", "description": "e.g. 7 * 6"}},
    required=["expression"],
)


class MicrophoneInput(BaseInputTransport):
    """A transport input fed by `Microphone` in real time, as a sound card's callback is."""

    def __init__(self, mic: Microphone, params: TransportParams) -> None:
        super().__init__(params)
        self._mic = mic
        self._feeder: asyncio.Task[None] | None = None

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)
        self._feeder = self.create_task(self._feed())

    async def stop(self, frame: EndFrame) -> None:
        await self._stop_feeding()
        await super().stop(frame)

    async def cancel(self, frame: CancelFrame) -> None:
        await self._stop_feeding()
        await super().cancel(frame)

    async def _stop_feeding(self) -> None:
        if self._feeder is not None:
            await self.cancel_task(self._feeder)
            self._feeder = None

    async def _feed(self) -> None:
        async for chunk in self._mic.chunks():
            await self.push_audio_frame(InputAudioRawFrame(chunk, RATE, 1))


class SpeakerOutput(BaseOutputTransport):
    """A transport output that plays into `Speaker`, taking as long as playing takes."""

    def __init__(self, speaker: Speaker, replies: list[int], params: TransportParams) -> None:
        super().__init__(params)
        self._speaker = speaker
        self._replies = replies  # replies started so far (counted by the Watcher)

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        self._speaker.write(frame.audio, len(self._replies))
        await asyncio.sleep(self._speaker.queued_ms / 1000)  # a blocking sound card write
        return True


class VirtualSoundCard(BaseTransport):
    def __init__(self, mic: Microphone, speaker: Speaker, replies: list[int]) -> None:
        super().__init__()
        params = TransportParams(audio_in_enabled=True, audio_out_enabled=True)
        self._input = MicrophoneInput(mic, params)
        self._output = SpeakerOutput(speaker, replies, params)

    def input(self) -> FrameProcessor:
        return self._input

    def output(self) -> FrameProcessor:
        return self._output


class Watcher(FrameProcessor):
    """Passes every frame on; notes the replies that start and end, interruptions and errors."""

    def __init__(self, progress: Progress, speaker: Speaker, replies: list[int]) -> None:
        super().__init__()
        self._progress = progress
        self._speaker = speaker
        self._replies = replies

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSStartedFrame):
            self._replies.append(1)
        elif isinstance(frame, LLMFullResponseEndFrame):
            self._progress.responses_done += 1
        elif isinstance(frame, InterruptionFrame) and self._speaker.received_ms > 0:
            emit("interrupted", played_ms=self._speaker.clear())
            self._progress.interrupted = True
        elif isinstance(frame, ErrorFrame):
            emit("framework_error", error=str(frame.error)[:1000], fatal=frame.fatal)
        await self.push_frame(frame, direction)


def user_transcripts(context: LLMContext) -> list[str]:
    """The user messages that pipecat's context holds (its aggregator writes them)."""
    found = []
    for message in context.get_messages():
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str) and content.strip():
                found.append(content)
    return found


def report_log(message: Any) -> None:
    record = message.record
    emit("log", level=record["level"].name, logger=record["name"], message=str(record["message"]))


async def main() -> None:
    args = parse_args(
        lambda parser: parser.add_argument(
            "--transcription",
            action="store_true",
            help="ask for user transcripts as pipecat's realtime example does (its default: none)",
        )
    )
    asyncio.get_running_loop().set_exception_handler(loop_exception_handler)
    mic, speaker, progress = Microphone(), Speaker(), Progress()
    settings = None
    if args.scenario == "tool" or args.transcription:
        properties = SessionProperties()
        if args.scenario == "tool":
            properties.tools = ToolsSchema(standard_tools=[CALCULATE])
        if args.transcription:
            transcription = InputAudioTranscription()
            properties.audio = AudioConfiguration(input=AudioInput(transcription=transcription))
        settings = OpenAIRealtimeLLMService.Settings(session_properties=properties)
    llm = OpenAIRealtimeLLMService(
        api_key="sk-framework-test", base_url=f"{args.base}/v1/realtime", settings=settings
    )

    async def on_calculate(params: FunctionCallParams) -> None:
        expression = str(params.arguments.get("expression", ""))
        result = calculate(expression)
        emit("tool_call", name="calculate", arguments=dict(params.arguments), result=result)
        await params.result_callback(result)

    llm.register_function("calculate", on_calculate)
    context = LLMContext()
    user_aggregator, assistant_aggregator = LLMContextAggregatorPair(context)
    replies: list[int] = []
    card = VirtualSoundCard(mic, speaker, replies)
    pipeline = Pipeline(
        [
            card.input(),
            user_aggregator,
            llm,
            Watcher(progress, speaker, replies),
            card.output(),
            assistant_aggregator,
        ]
    )
    worker = PipelineWorker(pipeline, params=PipelineParams())
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    running = asyncio.create_task(runner.run())

    async def watch_context() -> None:
        while True:
            progress.user_transcript = " ".join(user_transcripts(context))
            await asyncio.sleep(0.1)

    watching = asyncio.create_task(watch_context())
    try:
        await drive(args, mic, speaker, progress)
    finally:
        mic.closed = True
        watching.cancel()
        emit(
            "summary",
            user_transcripts=user_transcripts(context),
            context=[m for m in context.get_messages() if isinstance(m, dict)],
            responses_done=progress.responses_done,
            interrupted=progress.interrupted,
        )
        await worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


if __name__ == "__main__":
    logger.remove()
    logger.add(report_log, level="WARNING")
    install_excepthook()
    asyncio.run(main())
