"""One response in flight: the reasoning scheduler's deltas (tool calls split out of the answer)
and the speech stream, merged into one event stream. Stopping it (barge-in, `response.cancel`, a
discarded speculative start) cancels the engine sequences and the speech stream, so no work
goes on for a reply nobody will hear."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from streaming.responder import (
    AnswerDelta,
    InvalidToolCall,
    ResponseEvent,
    ResponseFinished,
    SpeechChunk,
    ToolCallDelta,
    ToolCalled,
)
from streaming.scheduler import ReplyScheduler
from streaming.tool_calls import ParsedDelta, ToolCallError, ToolCallParser
from tts.base import SpeechStream


class StageClock:
    """Seconds from the start of a response to the first time each stage is reached."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.stages: dict[str, float] = {}

    def mark(self, stage: str) -> None:
        self.stages.setdefault(stage, time.perf_counter() - self.start)


async def _wait_through_cancellation(task: asyncio.Task[None]) -> None:
    """Wait for `task` to end even if the waiter is cancelled meanwhile; such a cancellation
    is raised once the task has ended (a stop must not be cut in half)."""
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = cancelled or not task.done()
    if cancelled:
        raise asyncio.CancelledError
    task.result()


class ReplyStream:
    """One response in flight: the scheduler's deltas and the speech stream, merged."""

    def __init__(
        self,
        scheduler: ReplyScheduler,
        speech: SpeechStream | None,
        clock: StageClock,
        input_tokens: int,
        tools: set[str] | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.speech = speech
        self.clock = clock
        self.input_tokens = input_tokens
        self.tools = tools or set()
        self.tool_calls = ToolCallParser()
        # Events from both producers; None marks one producer's end, an exception its failure.
        self.events_queue: asyncio.Queue[ResponseEvent | Exception | None] = asyncio.Queue()
        self.tasks: list[asyncio.Task[None]] = []
        self._stopping: asyncio.Task[None] | None = None

    async def events(self) -> AsyncIterator[ResponseEvent]:
        producers = [self._decode()] + ([self._speak()] if self.speech else [])
        self.tasks = [asyncio.create_task(self._produce(p)) for p in producers]
        running = len(self.tasks)
        while running:
            event = await self.events_queue.get()
            if event is None:
                running -= 1
            elif isinstance(event, Exception):
                raise event
            else:
                yield event
        yield self._finished()

    async def _produce(self, producer: Coroutine[Any, Any, None]) -> None:
        try:
            await producer
        except Exception as error:  # handed to the consumer, which raises it
            self.events_queue.put_nowait(error)
        else:
            self.events_queue.put_nowait(None)

    async def stop(self) -> None:
        """Cancel the producers, the engine sequences and the speech stream. Idempotent, and
        shielded: a caller cancelled again while it stops (a cancel, then a disconnect) still
        waits for the stop to finish, then gets its cancellation, so nothing is left running."""
        if self._stopping is None:
            self._stopping = asyncio.create_task(self._stop())
        await _wait_through_cancellation(self._stopping)

    async def _stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        try:
            await self.scheduler.stop()
        finally:
            if self.speech is not None:
                await self.speech.cancel()

    async def _decode(self) -> None:
        async for event in self.scheduler.events():
            if isinstance(event, AnswerDelta):
                self.clock.mark("first_answer_token")
                self._answer(self.tool_calls.feed(event.text), event.tokens)
            else:
                self.clock.mark("first_reasoning_token")
                self.events_queue.put_nowait(event)
        try:
            self._answer(self.tool_calls.finish(), 0)
        except ToolCallError as error:
            if self.scheduler.complete:  # a call the model closed its turn on, unfinished
                raise InvalidToolCall(str(error)) from None
            # cut by max_output_tokens: the call stays incomplete, as the response does
        if self.speech is not None:
            self.speech.flush()

    def _answer(self, parsed: ParsedDelta, tokens: int) -> None:
        """Speech goes to the speech stream and out as text; tool calls only out, as events."""
        if parsed.speech:
            if self.speech is not None:
                self.speech.feed(parsed.speech)  # the answer only: reasoning is never spoken
            self.events_queue.put_nowait(AnswerDelta(parsed.speech, tokens))
            tokens = 0
        for index, name, delta in parsed.argument_deltas:
            if name not in self.tools:
                raise InvalidToolCall(f"the model called {name!r}, which is not a declared tool")
            self.events_queue.put_nowait(ToolCallDelta(index, name, delta))
        for index, call in parsed.calls:
            self.events_queue.put_nowait(ToolCalled(index, call))

    async def _speak(self) -> None:
        assert self.speech is not None
        async for chunk in self.speech:
            self.clock.mark("first_tts_chunk")
            self.events_queue.put_nowait(SpeechChunk(chunk))

    def _finished(self) -> ResponseFinished:
        scheduler = self.scheduler
        return ResponseFinished(
            status="completed" if scheduler.complete else "incomplete",
            input_tokens=self.input_tokens,
            reasoning_tokens=scheduler.reasoning_tokens,
            answer_tokens=scheduler.answer_tokens,
            stage_seconds=dict(self.clock.stages),
            mode=scheduler.schedule.mode,
        )
