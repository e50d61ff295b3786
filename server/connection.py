"""One WebSocket connection around one `Session`: the thin I/O layer.

- One send path: everything the client gets goes through the `Outbox` and one sender task,
  which also closes the socket and takes the latency measurements at the moment of writing.
- Backpressure: the responder's events wait while the outbox is above its high-water mark, so
  a slow reader slows the model instead of growing memory; control events never wait.
- One task per response consumes the responder. Cancelling it closes the responder's async
  generator, whose `finally` stops the engine and the speech stream.
- A response's usage and stage timings are observed when its `response.done` goes out, so a
  discarded speculative start leaves no trace beyond the speculation counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections import deque
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from server.metrics import Metrics
from server.protocol import (
    CancelResponse,
    Close,
    ConfirmResponse,
    ErrorCode,
    Output,
    Session,
    StartResponse,
)
from server.protocol.session import PrepareResponse
from streaming.responder import AnswerDelta, ReasoningDelta, Responder, ResponseFinished
from streaming.scheduler import mode_for_effort

log = logging.getLogger("server.connection")

AUDIO_DELTA_TYPES = ("response.output_audio.delta", "response.audio.delta")
LOW_WATER_FRACTION = 0.5  # writers resume once the outbox has drained to half
CLOSE_TIMEOUT_SECONDS = 5.0  # how long a closing session waits for its last events to go out


class Outbox:
    """An unbounded FIFO with a high-water mark that writers of bulk data wait on."""

    def __init__(self, high_water: int) -> None:
        self._items: deque[dict[str, Any] | Close] = deque()
        self._high = high_water
        self._low = max(1, int(high_water * LOW_WATER_FRACTION))
        self._ready = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()

    def push(self, item: dict[str, Any] | Close) -> None:
        self._items.append(item)
        self._ready.set()
        if len(self._items) >= self._high:
            self._writable.clear()

    async def get(self) -> dict[str, Any] | Close:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        item = self._items.popleft()
        if len(self._items) <= self._low:
            self._writable.set()
        return item

    async def wait_writable(self) -> None:
        await self._writable.wait()


class Connection:
    def __init__(
        self,
        ws: WebSocket,
        session: Session,
        responder: Responder,
        metrics: Metrics,
        *,
        send_queue_events: int,
        max_session_seconds: float,
        idle_timeout_seconds: float,
    ) -> None:
        self.ws = ws
        self.session = session
        self.responder = responder
        self.metrics = metrics
        self.outbox = Outbox(send_queue_events)
        self.max_session_seconds = max_session_seconds
        self.idle_timeout_seconds = idle_timeout_seconds
        self._responses: dict[str, asyncio.Task[None]] = {}
        self._started: dict[str, StartResponse] = {}  # until response.done or cancel
        self._latency: dict[str, StartResponse] = {}  # responses awaiting their first audio
        self._finished: dict[str, ResponseFinished] = {}  # observed when response.done goes out
        self._tokens: dict[str, int] = {}  # decoded so far, per response (for wasted work)
        self._preparing: set[asyncio.Task[None]] = set()  # work ahead on turns in progress
        self._audio_in_ms = 0.0
        self._audio_out_ms = 0.0
        self._context = {"session_id": session.id}

    async def run(self) -> None:
        sender = asyncio.create_task(self._send_loop())
        try:
            self._handle(self.session.start())
            await self._receive_loop(sender)
        finally:
            tasks = [*self._responses.values(), *self._preparing]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender

    async def _receive_loop(self, sender: asyncio.Task[None]) -> None:
        deadline = time.monotonic() + self.max_session_seconds
        while not self.session.closed and not sender.done():
            remaining = deadline - time.monotonic()
            timeout = min(remaining, self.idle_timeout_seconds)
            try:
                message = await asyncio.wait_for(self.ws.receive(), timeout=max(timeout, 0))
            except TimeoutError:
                expired = time.monotonic() >= deadline
                code = ErrorCode.SESSION_EXPIRED if expired else ErrorCode.SESSION_IDLE_TIMEOUT
                text = (
                    f"the session reached its maximum duration of {self.max_session_seconds:g} s"
                    if expired
                    else f"no client event for {self.idle_timeout_seconds:g} s"
                )
                log.info("closing session: %s", text, extra={**self._context, "code": str(code)})
                self._handle(self.session.close(code, text))
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(sender, CLOSE_TIMEOUT_SECONDS)
                return
            except WebSocketDisconnect:
                return
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            self._handle(self.session.receive(data, time.monotonic()))

    # --- outputs -----------------------------------------------------------------------

    def _handle(self, outputs: list[Output]) -> None:
        for output in outputs:
            if isinstance(output, dict):
                self.outbox.push(output)
            elif isinstance(output, StartResponse):
                self._start(output)
            elif isinstance(output, ConfirmResponse):
                self._confirm(output)
            elif isinstance(output, CancelResponse):
                self._cancel(output)
            elif isinstance(output, PrepareResponse):
                self._prepare(output)
            elif isinstance(output, Close):
                self.outbox.push(output)
        self._count_audio()

    def _start(self, action: StartResponse) -> None:
        self._started[action.response_id] = action
        if action.speculative:
            self.metrics.speculative_starts.inc()
        else:
            self._latency[action.response_id] = action
        task = asyncio.create_task(self._run_response(action))
        self._responses[action.response_id] = task
        task.add_done_callback(lambda _: self._responses.pop(action.response_id, None))
        log.info(
            "speculative response started" if action.speculative else "response started",
            extra={**self._context, "response_id": action.response_id},
        )

    def _confirm(self, action: ConfirmResponse) -> None:
        started = self._started.get(action.response_id)
        if started is not None:
            self._latency[action.response_id] = dataclasses.replace(
                started, speech_end_at=action.speech_end_at, committed_at=action.committed_at
            )
        self.metrics.speculations.labels("used").inc()
        log.info(
            "speculation confirmed", extra={**self._context, "response_id": action.response_id}
        )

    def _cancel(self, action: CancelResponse) -> None:
        self._started.pop(action.response_id, None)
        self._latency.pop(action.response_id, None)
        self._finished.pop(action.response_id, None)
        tokens = self._tokens.pop(action.response_id, 0)
        task = self._responses.get(action.response_id)
        if task is not None:
            task.cancel()
        if action.reason == "turn_detected":
            self.metrics.barge_ins.inc()
        elif action.reason == "speculation_discarded":
            self.metrics.speculations.labels("discarded").inc()
            self.metrics.speculation_wasted_tokens.inc(tokens)
        log.info(
            "response cancelled",
            extra={**self._context, "response_id": action.response_id, "reason": action.reason},
        )

    def _prepare(self, action: PrepareResponse) -> None:
        task = asyncio.create_task(self._run_prepare(action))
        self._preparing.add(task)
        task.add_done_callback(self._preparing.discard)

    async def _run_prepare(self, action: PrepareResponse) -> None:
        try:
            await self.responder.prepare(action.request)
        except Exception:  # working ahead is an optimisation: the turn goes on without it
            log.exception("responder.prepare failed", extra=self._context)

    async def _run_response(self, action: StartResponse) -> None:
        response_id = action.response_id
        stream = self.responder.respond(action.request)
        try:
            async for event in stream:
                await self.outbox.wait_writable()
                if isinstance(event, ReasoningDelta | AnswerDelta):
                    self._tokens[response_id] = self._tokens.get(response_id, 0) + event.tokens
                elif isinstance(event, ResponseFinished):
                    self._finished[response_id] = event
                self._handle(self.session.on_response_event(response_id, event))
                if isinstance(event, ResponseFinished):
                    break
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("responder failed", extra={**self._context, "response_id": response_id})
            self._handle(self.session.on_response_failed(response_id))
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

    def _observe_finished(self, event: ResponseFinished, mode: str) -> None:
        for stage, seconds in event.stage_seconds.items():
            self.metrics.stage.labels(stage, mode).observe(seconds)
        self.metrics.reasoning_tokens.inc(event.reasoning_tokens)
        self.metrics.answer_tokens.inc(event.answer_tokens)

    def _count_audio(self) -> None:
        stats = self.session.stats
        if stats.audio_in_ms > self._audio_in_ms:
            self.metrics.audio_in.inc((stats.audio_in_ms - self._audio_in_ms) / 1000)
            self._audio_in_ms = stats.audio_in_ms
        if stats.audio_out_ms > self._audio_out_ms:
            self.metrics.audio_out.inc((stats.audio_out_ms - self._audio_out_ms) / 1000)
            self._audio_out_ms = stats.audio_out_ms

    # --- the one send path -------------------------------------------------------------

    async def _send_loop(self) -> None:
        while True:
            item = await self.outbox.get()
            if isinstance(item, Close):
                await self.ws.close(item.code, item.reason[:120])  # a close reason is <= 123 bytes
                return
            await self.ws.send_text(json.dumps(item))
            self._after_send(item)

    def _after_send(self, event: dict[str, Any]) -> None:
        type_ = event["type"]
        if type_ in AUDIO_DELTA_TYPES:
            action = self._latency.pop(event["response_id"], None)
            if action is not None:
                self._observe_first_audio(action, time.monotonic())
        elif type_ == "error":
            self.metrics.protocol_errors.labels(event["error"]["code"]).inc()
        elif type_ == "response.done":
            response = event["response"]
            started = self._started.pop(response["id"], None)
            self._latency.pop(response["id"], None)
            self._tokens.pop(response["id"], None)
            finished = self._finished.pop(response["id"], None)
            if finished is not None and started is not None:
                self._observe_finished(finished, _mode(started))
            self.metrics.responses.labels(response["status"]).inc()
            log.info(
                "response done",
                extra={
                    **self._context,
                    "response_id": response["id"],
                    "status": response["status"],
                },
            )

    def _observe_first_audio(self, action: StartResponse, written_at: float) -> None:
        mode = _mode(action)
        if action.committed_at is not None:
            self.metrics.stage.labels("server", mode).observe(written_at - action.committed_at)
        if action.speech_end_at is None:
            return  # no VAD turn: first-packet latency is defined from the end of speech
        self.metrics.first_audio_latency.labels(mode).observe(written_at - action.speech_end_at)
        if action.committed_at is not None:
            self.metrics.stage.labels("endpoint", mode).observe(
                action.committed_at - action.speech_end_at
            )


def _mode(action: StartResponse) -> str:
    """The `mode` label: the reasoning scheduler's mode for the response's effort."""
    return mode_for_effort(action.request.reasoning_effort)
