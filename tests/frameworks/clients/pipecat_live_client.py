"""pipecat's OpenAILiveLLMService (GPT-Live) at its defaults against our server.

Run in the framework's own environment (.venv-pipecat):

    python pipecat_live_client.py --base ws://127.0.0.1:PORT --scenario turn --question q.wav

The pipeline of pipecat_client.py (transport input, user aggregator, the service, transport
output, assistant aggregator, on the same virtual sound card), with pipecat's GPT-Live service in
place of the Realtime one: only `api_key` and `base_url` are given to it. As in pipecat's own
examples, an `LLMRunFrame` starts the session (the service sends `session.start` on the first
context it sees).
"""

from __future__ import annotations

import asyncio
import contextlib

from common import (
    Microphone,
    Progress,
    Speaker,
    drive,
    emit,
    install_excepthook,
    loop_exception_handler,
    parse_args,
)
from loguru import logger
from pipecat.frames.frames import LLMRunFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.services.openai.live.llm import OpenAILiveLLMService
from pipecat.workers.runner import WorkerRunner
from pipecat_client import VirtualSoundCard, Watcher, report_log, user_transcripts


async def main() -> None:
    args = parse_args()
    asyncio.get_running_loop().set_exception_handler(loop_exception_handler)
    mic, speaker, progress = Microphone(), Speaker(), Progress()
    llm = OpenAILiveLLMService(
        api_key="sk-framework-test", base_url=f"{args.base}/v1/live/sessions"
    )
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
    await worker.queue_frames([LLMRunFrame()])

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
