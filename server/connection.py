"""One WebSocket connection around one `Session`: the thin I/O layer.

- One send path: everything the client gets goes through the `Outbox` and one sender task,
  which also closes the socket and takes the latency measurements at the moment of writing.
- The outbox is bounded in bytes (docs/security.md): the responder's events wait while it holds
  `send_queue_bytes` or more, so a slow reader slows the model instead of growing memory; the
  client's own messages are not read while it holds `HARD_LIMIT_FACTOR` times that; a queue
  that does not move for `send_stall_seconds` means a client that does not read, and the
  connection is closed with 1008 (the socket is aborted: a close frame would wait behind the
  unread data for ever).
- Control overtakes data, interruption flushes: errors and turn-detection events go ahead of
  queued deltas, and cancelling a response (barge-in, `response.cancel`) drops its deltas still
  queued, so that its `response.done` follows at once.
- One task per response consumes the responder. Cancelling it closes the responder's async
  generator, whose `finally` stops the engine and the speech stream.
- One record per response (`ResponseRecord`), from its start until its `response.done` is
  written or it is cancelled, and its task has ended.
- The metrics are their own piece (server/observe.py), told of the session's outputs and of
  the moments they reach the client. A response's usage and stage timings are observed when
  its `response.done` goes out, so a discarded speculative start leaves no trace beyond the
  speculation counters. Responses are counted by status when their `response.done` is queued;
  those cut by a disconnect count as `cancelled`.
- Catch-all: an exception that escapes the session machine is logged with the session id, the
  client gets a generic `server_error` and the connection closes with 1011.
- Idle: a session is idle while nothing is heard (no speech from turn detection) and no
  response runs or plays; after `idle_timeout_seconds` of that it is closed. Client events as
  such (`input_audio_buffer.clear`, silence) do not keep a session alive.
- Draining (server/drain.py): once told to `drain`, the session is closed (close 1012) at its
  first quiet moment: no response running or unfinished, its audio played out, no turn being
  spoken or typed in; `shut_down` (the drain's bound) closes it at once.
- Dialects: the session machine is the Realtime `Session` or another dialect's machine
  (`SessionMachine`, server/protocol/machine.py). Another dialect's events come as `Rendered`:
  what goes on the wire, and the Realtime event it renders, which all the bookkeeping above
  reads. With `audio_lead_seconds` (GPT-Live, whose clients play all they receive) output audio
  is paced to real time, at most that far ahead of playback, so that a cancel stops the voice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeGuard

from starlette.websockets import WebSocket, WebSocketDisconnect

from server.drain import CLOSE_SERVICE_RESTART, CLOSED_MESSAGE
from server.metrics import Metrics
from server.observe import ConnectionObserver
from server.protocol import (
    CancelResponse,
    Close,
    ConfirmResponse,
    ErrorCode,
    MachineOutput,
    Rendered,
    SessionMachine,
    StartResponse,
)
from server.protocol.actions import (
    Action,
    JudgeTurnEnd,
    PrepareResponse,
    Transcribe,
    TurnsMerged,
)
from server.protocol.audio import AudioFormat
from server.protocol.errors import error_event
from server.protocol.items import new_id
from server.turn_work import EndOfTurnJudge, TurnWork
from streaming.responder import (
    AnswerDelta,
    InvalidToolCall,
    ReasoningDelta,
    Responder,
    ResponseFinished,
    ResponseRefused,
)
from streaming.turns.machine import TurnState

log = logging.getLogger("server.connection")

AUDIO_DELTA_TYPES = ("response.output_audio.delta", "response.audio.delta")
# A response's streamed deltas (both dialects): dropped from the queue when it is cancelled.
DELTA_TYPES = frozenset(
    {
        *AUDIO_DELTA_TYPES,
        "response.output_audio_transcript.delta",
        "response.audio_transcript.delta",
        "response.output_text.delta",
        "response.text.delta",
        "response.reasoning_text.delta",
    }
)
# Events that belong to no response's stream: they go ahead of the deltas queued before them.
URGENT_TYPES = frozenset(
    {
        "error",
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        # GPT-Live: the backend's work and delegations go on while the voice plays
        "response.event",
        "session.delegation.created",
    }
)
# Events that restart the idle clock; speech events also say whether the user is speaking.
SPEECH_TYPES = frozenset({"input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped"})
IDLE_CLOCK_TYPES = SPEECH_TYPES | {"response.created", "response.done"}
LOW_WATER_FRACTION = 0.5  # writers resume once the outbox has drained to half
# The client's messages wait (TCP backpressure on the client) above this multiple of the high
# water mark: only the answers to its own messages can take the queue there.
HARD_LIMIT_FACTOR = 2
CLOSE_TIMEOUT_SECONDS = 5.0  # how long a closing session waits for its last events to go out
WATCH_INTERVAL_SECONDS = 1.0  # the longest the watchdog sleeps between checks
DRAIN_CHECK_SECONDS = 0.05  # while draining: how often the watchdog looks for a quiet moment
CLOSE_POLICY_VIOLATION = 1008  # RFC 6455: the client broke the rules (here: it does not read)
CLOSE_INTERNAL_ERROR = 1011  # RFC 6455: the server hit an unexpected condition
INTERNAL_ERROR_MESSAGE = (
    "the session failed inside the server and has been closed; the failure is logged "
    "under this session's id. Open a new session to go on."
)


@dataclass
class Queued:
    """One serialized event waiting in the outbox."""

    text: str
    type: str
    response_id: str | None
    event: dict[str, Any] | None  # what `_after_send` reads; None for deltas (only their id)
    audio_seconds: float = 0.0  # an audio delta's duration, where output audio is paced


class Outbox:
    """A FIFO of serialized events, counted in bytes, with a high-water mark that the responder
    waits on and a hard limit that the client's reader waits on. Urgent events overtake the
    deltas queued at its end, and nothing else, so the order of every other event is kept."""

    def __init__(self, high_water_bytes: int) -> None:
        self._items: deque[Queued | Close] = deque()
        self.bytes = 0
        self._high = high_water_bytes
        self._low = max(1, int(high_water_bytes * LOW_WATER_FRACTION))
        self._hard = high_water_bytes * HARD_LIMIT_FACTOR
        self._ready = asyncio.Event()
        self._writable = asyncio.Event()  # the responder may add events
        self._room = asyncio.Event()  # the client's next message may be read
        self._writable.set()
        self._room.set()
        self._in_flight = False  # the sender holds an item it has not finished writing
        self._progress_at = time.monotonic()

    def push(
        self, event: dict[str, Any], wire: dict[str, Any] | None = None, audio_seconds: float = 0.0
    ) -> None:
        """Queue `event` (or, for another dialect, `wire`, with `event` its Realtime stand-in)."""
        type_ = event["type"]
        delta = type_ in DELTA_TYPES
        text = json.dumps(event if wire is None else wire)
        queued = Queued(
            text, type_, event.get("response_id"), None if delta else event, audio_seconds
        )
        self._mark_busy()
        if type_ in URGENT_TYPES:
            self._items.insert(self._before_trailing_deltas(), queued)
        else:
            self._items.append(queued)
        self.bytes += len(queued.text)
        self._update()

    def push_close(self, close: Close) -> None:
        self._mark_busy()
        self._items.append(close)
        self._ready.set()

    def purge(self, response_id: str) -> int:
        """Drop the queued deltas of `response_id`; returns how many bytes went."""
        kept: deque[Queued | Close] = deque()
        dropped = 0
        for item in self._items:
            if _is_delta(item) and item.response_id == response_id:
                dropped += len(item.text)
            else:
                kept.append(item)
        self._items = kept
        self.bytes -= dropped
        self._update()
        return dropped

    def clear(self) -> None:
        self._items.clear()
        self.bytes = 0
        self._update()

    async def get(self) -> Queued | Close:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        item = self._items.popleft()
        if isinstance(item, Queued):
            self.bytes -= len(item.text)
        self._in_flight = True
        self._update()
        return item

    def written(self) -> None:
        """The sender finished writing the item it took."""
        self._in_flight = False
        self._progress_at = time.monotonic()

    def hold(self, seconds: float) -> None:
        """The sender holds the item it took for `seconds` on purpose (pacing): not a stall."""
        self._progress_at = time.monotonic() + seconds

    def stalled_for(self, now: float) -> float:
        """Seconds the queue has held events without the sender finishing one; 0 when idle."""
        if not (self._in_flight or self._items):
            return 0.0
        return max(0.0, now - self._progress_at)

    async def wait_writable(self) -> None:
        await self._writable.wait()

    async def wait_room(self) -> None:
        await self._room.wait()

    def _before_trailing_deltas(self) -> int:
        index = len(self._items)
        while index and _is_delta(self._items[index - 1]):
            index -= 1
        return index

    def _mark_busy(self) -> None:
        if not (self._in_flight or self._items):
            self._progress_at = time.monotonic()  # a stall is counted from the first event

    def _update(self) -> None:
        if self._items:
            self._ready.set()
        if self.bytes >= self._high:
            self._writable.clear()
        elif self.bytes <= self._low:
            self._writable.set()
        if self.bytes >= self._hard:
            self._room.clear()
        else:
            self._room.set()


def _is_delta(item: Queued | Close) -> TypeGuard[Queued]:
    return isinstance(item, Queued) and item.type in DELTA_TYPES


@dataclass
class ResponseRecord:
    """What the connection keeps of one response."""

    start: StartResponse  # its latency fields as confirmed, for a speculative start
    task: asyncio.Task[None] | None = None  # consumes the responder
    awaiting_audio: bool = False  # the client's, and its first audio not written yet
    told: bool = False  # the client was told of it and its `response.done` is not queued yet
    finished: ResponseFinished | None = None  # observed when its `response.done` goes out
    tokens: int = 0  # decoded so far (for the work a discarded speculation wasted)
    over: bool = False  # its `response.done` written, or it was cancelled

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()


class Connection:
    def __init__(
        self,
        ws: WebSocket,
        session: SessionMachine,
        responder: Responder,
        metrics: Metrics,
        *,
        send_queue_bytes: int,
        send_stall_seconds: float,
        max_session_seconds: float,
        idle_timeout_seconds: float,
        judge: EndOfTurnJudge | None = None,
        audio_lead_seconds: float | None = None,
    ) -> None:
        self.ws = ws
        self.session = session
        self.responder = responder
        self.metrics = metrics
        self.observe = ConnectionObserver(metrics)
        self.outbox = Outbox(send_queue_bytes)
        self.send_stall_seconds = send_stall_seconds
        self.max_session_seconds = max_session_seconds
        self.idle_timeout_seconds = idle_timeout_seconds
        self._records: dict[str, ResponseRecord] = {}
        self._preparing: set[asyncio.Task[None]] = set()  # work ahead on turns in progress
        self._context = {"session_id": session.id}
        self._closing = asyncio.Event()  # a Close is queued
        self._draining = False  # the server drains: close at the first quiet moment
        self._wake = asyncio.Event()  # wakes the watchdog early
        self._broken = False  # the session machine raised: it is not called again
        now = time.monotonic()
        self._deadline = now + max_session_seconds
        self._heard_at = now  # last speech heard or response event (the idle clock)
        self._playing_until = now  # when the audio sent so far has played out at 1x
        self._in_speech = False
        self._sender: asyncio.Task[None] | None = None
        self.audio_lead_seconds = audio_lead_seconds  # None: audio goes out as it comes
        self._paced_until = 0.0  # when the audio written so far has played out at 1x
        self._work = TurnWork(
            session,
            self._call_session,
            responder,
            judge,
            metrics,
            self._awaiting_audio,
            self._context,
        )
        self._act: dict[type, Callable[[Any], None]] = {
            StartResponse: self._start,
            ConfirmResponse: self._confirm,
            CancelResponse: self._cancel,
            PrepareResponse: self._prepare,
            JudgeTurnEnd: self._work.judge_turn_end,
            Transcribe: self._work.transcribe,
            TurnsMerged: self.observe.merged,
            Close: self._queue_close,
        }

    async def run(self) -> None:
        sender = self._sender = asyncio.create_task(self._send_loop())
        receiver = asyncio.create_task(self._receive_loop())
        watchdog = asyncio.create_task(self._watch())
        closing = asyncio.create_task(self._closing.wait())
        try:
            self._call_session(self.session.start)
            await asyncio.wait(
                {sender, receiver, watchdog, closing}, return_when=asyncio.FIRST_COMPLETED
            )
            stalled = (
                watchdog.done()
                and not watchdog.cancelled()
                and watchdog.exception() is None
                and watchdog.result()
            )
            if stalled:
                await self._abort(CLOSE_POLICY_VIOLATION, "the client does not read its events")
            elif self._closing.is_set() and not sender.done():
                await asyncio.wait({sender}, timeout=CLOSE_TIMEOUT_SECONDS)
                if not sender.done():
                    await self._abort(
                        CLOSE_POLICY_VIOLATION, "closing, and its events are not read"
                    )
        finally:
            for task in (receiver, watchdog, closing):
                task.cancel()
            tasks = [*self._response_tasks(), *self._preparing]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._work.close()
            sender.cancel()
            await asyncio.gather(sender, receiver, watchdog, closing, return_exceptions=True)
            self.observe.disconnected(sum(record.told for record in self._records.values()))
            self._records.clear()

    async def _receive_loop(self) -> None:
        while True:
            await self.outbox.wait_room()  # a client that does not read is not read either
            try:
                message = await self.ws.receive()
            except WebSocketDisconnect:
                return
            if message["type"] == "websocket.disconnect" or self._closing.is_set():
                return
            data = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            now = time.monotonic()
            self._call_session(self.session.receive, data, now)
            if self._in_speech:
                self._heard_at = now  # speech goes on as long as its audio keeps coming

    # --- lifetime ----------------------------------------------------------------------

    async def _watch(self) -> bool:
        """Session lifetime and idleness (closed here), and a stalled send queue (returns
        True: `run` aborts the connection, so that no cancellation cuts the abort short)."""
        while not self._closing.is_set():
            now = time.monotonic()
            if self.outbox.stalled_for(now) >= self.send_stall_seconds:
                return True
            if self._draining and self._quiet(now):
                self.shut_down()
                return False
            if now >= self._deadline:
                self._close_session(
                    ErrorCode.SESSION_EXPIRED,
                    f"the session reached its maximum duration of {self.max_session_seconds:g} s",
                )
                return False
            if self._idle_for(now) >= self.idle_timeout_seconds:
                self._close_session(
                    ErrorCode.SESSION_IDLE_TIMEOUT,
                    f"nothing was heard and no response ran for {self.idle_timeout_seconds:g} s",
                )
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._next_check(now))
            self._wake.clear()
        return False

    def drain(self) -> None:
        """The server drains: close this session at its first quiet moment (`_quiet`)."""
        self._draining = True
        self._wake.set()

    def shut_down(self) -> None:
        """Close now for the drain: a response in progress is cancelled, the client gets the
        `server_shutting_down` error event, then close 1012."""
        if not self._closing.is_set():
            self._close_session(
                ErrorCode.SERVER_SHUTTING_DOWN, CLOSED_MESSAGE, CLOSE_SERVICE_RESTART
            )

    def _quiet(self, now: float) -> bool:
        """Nothing a close would cut: no response running or unfinished, its audio played out
        (at 1x), no turn being spoken (or, without turn detection, audio not committed yet)."""
        if self._busy() or self._in_speech or now < self._playing_until:
            return False
        turns = self.session.turns
        if turns.state == TurnState.MANUAL:
            return turns.buffer.empty
        return turns.state == TurnState.LISTENING

    def _idle_for(self, now: float) -> float:
        if self._in_speech or self._busy():
            return 0.0
        return now - max(self._heard_at, self._playing_until)

    def _busy(self) -> bool:
        """A response runs, or the client has not had its `response.done` yet."""
        return any(record.told or record.running for record in self._records.values())

    def _next_check(self, now: float) -> float:
        idle_left = self.idle_timeout_seconds - self._idle_for(now)
        stall_left = self.send_stall_seconds - self.outbox.stalled_for(now)
        interval = DRAIN_CHECK_SECONDS if self._draining else WATCH_INTERVAL_SECONDS
        return max(0.01, min(interval, self._deadline - now, idle_left, stall_left))

    def _close_session(self, code: ErrorCode, text: str, ws_code: int = 1000) -> None:
        log.info("closing session: %s", text, extra={**self._context, "code": str(code)})
        self.metrics.connections_closed.labels(str(code)).inc()
        self._call_session(self.session.close, code, text, ws_code)

    async def _abort(self, code: int, reason: str) -> None:
        """Close a connection whose client does not read: nothing queued can reach it."""
        log.warning(
            "closing connection %d: %s", code, reason, extra={**self._context, "code": code}
        )
        self.metrics.connections_closed.labels("not_reading").inc()
        self._closing.set()
        self.outbox.clear()
        if self._sender is not None:
            self._sender.cancel()
            await asyncio.gather(self._sender, return_exceptions=True)
        # With server.edge's protocol a close on a socket that does not drain aborts it.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(code, reason), CLOSE_TIMEOUT_SECONDS)

    # --- outputs -----------------------------------------------------------------------
    # --- outputs -----------------------------------------------------------------------

    def _call_session(self, call: Callable[..., Sequence[MachineOutput]], *args: Any) -> None:
        """Run one session method and act on its outputs; the catch-all for the machine."""
        if self._broken:
            return
        try:
            self._handle(call(*args))
        except Exception:
            self._break()

    def _break(self) -> None:
        """The session machine raised: log it, tell the client without details, close 1011."""
        log.exception("session failed; closing with 1011", extra=self._context)
        self._broken = True
        self.metrics.connections_closed.labels(str(ErrorCode.SERVER_ERROR)).inc()
        self.outbox.clear()
        event = error_event(new_id("event"), ErrorCode.SERVER_ERROR, INTERNAL_ERROR_MESSAGE)
        self.outbox.push(event)
        self.outbox.push_close(Close(CLOSE_INTERNAL_ERROR, "internal error"))
        self._closing.set()
        for task in self._response_tasks():
            task.cancel()

    def _handle(self, outputs: Sequence[MachineOutput]) -> None:
        for output in outputs:
            if isinstance(output, dict):
                self._push(output)
            elif isinstance(output, Rendered):
                self._push(output.realtime, output.wire, rendered=True)
            else:
                self._carry_out(output)
        added_s = self.observe.session_grew(self.session)
        if added_s:  # the client plays it at 1x: the session is not idle before it has
            self._playing_until = max(self._playing_until, time.monotonic()) + added_s

    def _carry_out(self, action: Action) -> None:
        self._act[type(action)](action)

    def _push(
        self, event: dict[str, Any], wire: dict[str, Any] | None = None, rendered: bool = False
    ) -> None:
        """Bookkeeping on the Realtime `event`, then it, or what renders it (`wire`; None
        where `rendered`: nothing goes out), into the outbox."""
        type_ = event["type"]
        if type_ in IDLE_CLOCK_TYPES:
            self._heard_at = time.monotonic()
            if type_ in SPEECH_TYPES:
                self._in_speech = type_ == "input_audio_buffer.speech_started"
        if type_ == "response.done":
            record = self._records.get(event["response"]["id"])
            if record is not None:
                record.told = False
        self.observe.queued(event)
        if rendered and wire is None:
            return
        audio_seconds = 0.0
        if self.audio_lead_seconds is not None and type_ in AUDIO_DELTA_TYPES:
            audio_seconds = _audio_seconds(event["delta"], self.session.config.output_format)
        self.outbox.push(event, wire, audio_seconds)

    def _queue_close(self, action: Close) -> None:
        self.outbox.push_close(action)
        self._closing.set()

    # --- responses ---------------------------------------------------------------------

    def _start(self, action: StartResponse) -> None:
        live = not action.speculative
        record = ResponseRecord(action, awaiting_audio=live, told=live)
        self._records[action.response_id] = record
        self.observe.started(action)
        record.task = asyncio.create_task(self._run_response(action))
        record.task.add_done_callback(lambda _: self._release(action.response_id))
        log.info(
            "speculative response started" if action.speculative else "response started",
            extra={**self._context, "response_id": action.response_id},
        )

    def _confirm(self, action: ConfirmResponse) -> None:
        record = self._records.get(action.response_id)
        if record is not None:
            record.start = replace(
                record.start,
                speech_end_at=action.speech_end_at,
                committed_at=action.committed_at,
                detector=action.detector,
            )
            record.awaiting_audio = record.told = True
        self.observe.confirmed()
        log.info(
            "speculation confirmed", extra={**self._context, "response_id": action.response_id}
        )

    def _cancel(self, action: CancelResponse) -> None:
        record = self._records.get(action.response_id)
        tokens = 0
        if record is not None:
            tokens = record.tokens
            if record.task is not None:
                record.task.cancel()
            self._end(record)
        self.observe.cancelled(action, tokens, self.outbox.purge(action.response_id))
        log.info(
            "response cancelled",
            extra={**self._context, "response_id": action.response_id, "reason": action.reason},
        )

    def _end(self, record: ResponseRecord) -> None:
        """Its `response.done` was written, or it was cancelled: nothing more is observed of
        it, and it goes once its task has ended."""
        record.over = True
        record.awaiting_audio = False
        record.finished = None
        record.tokens = 0
        self._release(record.start.response_id)

    def _release(self, response_id: str) -> None:
        record = self._records.get(response_id)
        if record is not None and record.over and not record.running and not record.told:
            del self._records[response_id]

    def _live(self, response_id: str | None) -> ResponseRecord | None:
        """The response's record, unless it is over."""
        record = self._records.get(response_id or "")
        return record if record is not None and not record.over else None

    def _awaiting_audio(self, response_id: str) -> bool:
        record = self._live(response_id)
        return record is not None and record.awaiting_audio

    def _response_tasks(self) -> list[asyncio.Task[None]]:
        return [r.task for r in self._records.values() if r.task is not None and r.running]

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
                record = self._live(response_id)
                if record is not None and isinstance(event, ReasoningDelta | AnswerDelta):
                    record.tokens += event.tokens
                elif record is not None and isinstance(event, ResponseFinished):
                    record.finished = event
                self._call_session(self.session.on_response_event, response_id, event)
                if isinstance(event, ResponseFinished) or self._broken:
                    break
        except asyncio.CancelledError:
            raise
        except ResponseRefused as refused:  # the request, not the server: the client is told
            log.info(
                "response refused: %s",
                refused.message,
                extra={**self._context, "response_id": response_id},
            )
            code = ErrorCode(refused.code)
            self._call_session(self.session.on_response_failed, response_id, code, refused.message)
        except InvalidToolCall as invalid:
            log.warning(
                "the model wrote an invalid tool call: %s",
                invalid,
                extra={**self._context, "response_id": response_id},
            )
            message = "the model wrote a tool call that could not be parsed; it is logged"
            self._call_session(
                self.session.on_response_failed, response_id, ErrorCode.INVALID_TOOL_CALL, message
            )
        except Exception:
            log.exception("responder failed", extra={**self._context, "response_id": response_id})
            self._call_session(self.session.on_response_failed, response_id)
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

    # --- the one send path -------------------------------------------------------------

    async def _send_loop(self) -> None:
        while True:
            item = await self.outbox.get()
            if isinstance(item, Close):
                await self.ws.close(item.code, item.reason[:120])  # a close reason is <= 123 bytes
                self.outbox.written()
                return
            if item.audio_seconds and not await self._pace(item):
                self.outbox.written()
                continue  # its response was cancelled while it waited
            await self.ws.send_text(item.text)
            self.outbox.written()
            if item.audio_seconds:
                now = time.monotonic()
                self._paced_until = max(self._paced_until, now) + item.audio_seconds
            if item.event is not None or item.type in AUDIO_DELTA_TYPES:
                self._after_send(item)

    async def _pace(self, item: Queued) -> bool:
        """Hold an audio delta until the audio written before it is within
        `audio_lead_seconds` of playing out; False if its response was cancelled meanwhile.
        A closing session is not held: what is left goes out before the close."""
        assert self.audio_lead_seconds is not None
        wait = self._paced_until - time.monotonic() - self.audio_lead_seconds
        if wait > 0 and not self._closing.is_set():
            self.outbox.hold(wait)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), wait)
        return self._live(item.response_id) is not None

    def _after_send(self, item: Queued) -> None:
        if item.type in AUDIO_DELTA_TYPES:
            record = self._live(item.response_id)
            if record is not None and record.awaiting_audio:
                record.awaiting_audio = False
                self.observe.first_audio(record.start, time.monotonic())
                self._work.response_spoke(record.start.response_id)
        elif item.type == "response.done" and item.event is not None:
            response = item.event["response"]
            self._work.response_spoke(response["id"])
            record = self._live(response["id"])
            if record is not None:
                if record.finished is not None:
                    self.observe.finished(record.start, record.finished)
                self._end(record)
            log.info(
                "response done",
                extra={
                    **self._context,
                    "response_id": response["id"],
                    "status": response["status"],
                },
            )


def _audio_seconds(delta: str, fmt: AudioFormat) -> float:
    """The duration of a base64 audio delta, from its length."""
    n_bytes = len(delta) * 3 // 4 - (2 if delta.endswith("==") else 1 if delta.endswith("=") else 0)
    return fmt.duration_ms(n_bytes) / 1000
