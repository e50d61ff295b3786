"""The Realtime session as a state machine with no I/O: client messages in, server events and
actions out (in the style of h11 and websockets' sans-I/O core).

Rules of the design:
- Every public method returns the list of outputs it caused, in the order they must be acted
  on: server events (JSON-ready dicts, already named for the client's dialect) and actions
  (`StartResponse`, `CancelResponse`, `Close`) for the adapter to carry out.
- Bad input never raises and never changes state: it yields one `error` event naming the
  client's `event_id` and what to fix (see errors.py), and the session goes on.
- Time comes in as arguments: the audio clock is the input audio itself (milliseconds of
  audio appended), wall time (`now`, seconds) only timestamps latency measurements.
- A response belongs to the session from `StartResponse` until its `response.done`. After a
  cancel, late events of that response are ignored, so the adapter may close the responder
  at leisure.
- Speculation (DESIGN section 5): with `speculate_after_ms`, a pause of that long inside a
  turn starts the response on the audio so far, before the silence window closes. Its events
  are held back; when the turn commits they go out (`ConfirmResponse`) and the response goes
  on live; if speech resumes, or the client changes anything, it is thrown away
  (`CancelResponse` with reason `speculation_discarded`) and the client never hears of it.
- Listening ahead: every `prepare_every_ms` of a turn still in progress, `PrepareResponse`
  hands the conversation with the audio so far to the adapter, which lets the responder work
  ahead (encode finished chunks), so that the work left at the end of a long turn stays small.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np

from server.audio import (
    MODEL_SAMPLE_RATE,
    TTS_SAMPLE_RATE,
    InputDecoder,
    OutputEncoder,
    to_model_audio,
)
from server.protocol import models as m
from server.protocol.config import (
    ResponseOptions,
    SessionConfig,
    apply_update,
    response_options,
)
from server.protocol.errors import ErrorCode, ProtocolError, error_event
from server.protocol.input_buffer import SAMPLES_PER_MS, AudioBuffer
from server.protocol.items import Item, item_from_client, new_id, truncate, turn_of
from server.protocol.parse import b64decode, parse_json, sniff_event_id, validate
from server.protocol.render import (
    BETA_EVENT_NAMES,
    render_item,
    render_part,
    render_response,
    render_session,
    render_usage,
)
from server.vad import FRAME_MS, START_WINDOW_FRAMES, SpeechStarted, TurnDetector
from streaming.responder import (
    AnswerDelta,
    ReasoningDelta,
    ResponseEvent,
    ResponseFinished,
    ResponseRequest,
    SpeechChunk,
    Turn,
)

DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # ~20 s of 24 kHz PCM16 in base64 per message
DEFAULT_MAX_INPUT_BUFFER_MS = 10 * 60 * 1000  # a turn longer than this is not a conversation
# The model's audio encoder takes 25 s chunks: each one finished while the user still speaks
# can be encoded ahead (streaming.model.frontend.CHUNK_SECONDS).
PREPARE_EVERY_MS = 25_000


# client events after which a speculative response no longer fits the conversation
CHANGES_CONTEXT = {
    "session.update",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "conversation.item.create",
    "conversation.item.delete",
    "conversation.item.truncate",
    "response.create",
}


@dataclass(frozen=True)
class Limits:
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_input_buffer_ms: int = DEFAULT_MAX_INPUT_BUFFER_MS


# --- actions -------------------------------------------------------------------------------


@dataclass
class StartResponse:
    response_id: str
    request: ResponseRequest
    mode: str  # the metrics label: the reasoning effort, or "default"
    speech_end_at: float | None  # arrival of the last audio frame VAD classed as speech
    committed_at: float | None  # when the turn was committed (or response.create arrived)
    speculative: bool = False  # events held back until `ConfirmResponse`, or discarded


@dataclass
class ConfirmResponse:
    """A speculative response became real: its turn committed at `committed_at`."""

    response_id: str
    speech_end_at: float | None
    committed_at: float


@dataclass
class PrepareResponse:
    """The turn in progress grew by another `prepare_every_ms`: the responder may work ahead on
    `request` (the conversation with the audio so far). Nothing goes to the client."""

    request: ResponseRequest


@dataclass
class CancelResponse:
    response_id: str
    reason: str  # "turn_detected" (barge-in), "client_cancelled", "speculation_discarded"


@dataclass
class Close:
    code: int  # WebSocket close code
    reason: str


Action = StartResponse | ConfirmResponse | CancelResponse | PrepareResponse | Close
Output = dict[str, Any] | Action


@dataclass
class SessionStats:
    audio_in_ms: float = 0.0
    audio_out_ms: float = 0.0


@dataclass
class ActiveResponse:
    id: str
    options: ResponseOptions
    item: Item
    encoder: OutputEncoder | None  # None: a text-only response
    reasoning: str = ""
    first_audio_clock_ms: float | None = None


@dataclass
class Speculation:
    response: ActiveResponse
    held: list[ResponseEvent]  # the responder's events, until the turn commits


class Session:
    def __init__(
        self,
        config: SessionConfig,
        voices: list[str],
        *,
        beta: bool = False,
        limits: Limits | None = None,
        session_id: str | None = None,
        speculate_after_ms: int | None = None,
        prepare_every_ms: int | None = PREPARE_EVERY_MS,
    ) -> None:
        self.id = session_id or new_id("sess")
        self.config = config
        self.voices = voices
        self.beta = beta
        self.limits = limits or Limits()
        self.items: list[Item] = []
        self.closed = False
        self.stats = SessionStats()
        self.response: ActiveResponse | None = None
        self.last_response_id: str | None = None
        self._out: list[Output] = []
        self._decoder = InputDecoder(config.input_format)
        self._buffer = AudioBuffer()
        self._vad = self._make_vad()
        self._next_item_id = new_id("item")  # the id the next committed audio will get
        self._speech_start_ms = 0
        self._last_speech_at: float | None = None
        self._idle_since_ms: float | None = None
        self._speculate_after_ms = speculate_after_ms
        self._speculation: Speculation | None = None
        self._prepare_every_ms = prepare_every_ms
        self._prepared_parts = 0  # PrepareResponse actions sent for the turn in progress

    # --- public API --------------------------------------------------------------------

    def start(self) -> list[Output]:
        self._emit("session.created", session=render_session(self.id, self.config, self.beta))
        return self._drain()

    def receive(self, message: str | bytes, now: float) -> list[Output]:
        """One client WebSocket message."""
        event_id: str | None = None
        try:
            if self.closed:
                event_id = sniff_event_id(message)
                raise ProtocolError(ErrorCode.SESSION_CLOSED, "the session is closed")
            if len(message) > self.limits.max_message_bytes:
                event_id = sniff_event_id(message)
                raise ProtocolError(
                    ErrorCode.MESSAGE_TOO_LARGE,
                    f"message of {len(message)} bytes is over the limit of "
                    f"{self.limits.max_message_bytes}; split audio into smaller appends",
                )
            data = parse_json(message)
            event_id = data.get("event_id") if isinstance(data.get("event_id"), str) else None
            event = validate(data)
            type_: str = event.type  # type: ignore[attr-defined]
            getattr(self, "_on_" + type_.replace(".", "_"))(event, now)
            if type_ in CHANGES_CONTEXT:
                self._discard_speculation()  # the client changed what the guess was based on
        except ProtocolError as error:
            self._error(error, event_id)
        return self._drain()

    def on_response_event(self, response_id: str, event: ResponseEvent) -> list[Output]:
        """One event from the responder of `response_id`; stale ones are ignored."""
        speculation = self._speculation
        if speculation is not None and speculation.response.id == response_id:
            speculation.held.append(event)
            return []
        response = self.response
        if response is not None and response.id == response_id:
            self._apply(response, event)
        return self._drain()

    def _apply(self, response: ActiveResponse, event: ResponseEvent) -> None:
        if isinstance(event, ReasoningDelta):
            response.reasoning += event.text
            self._emit_part("response.reasoning_text.delta", response, delta=event.text)
        elif isinstance(event, AnswerDelta):
            response.item.text = (response.item.text or "") + event.text
            kind = "output_audio_transcript" if response.encoder else "output_text"
            self._emit_part(f"response.{kind}.delta", response, delta=event.text)
        elif isinstance(event, SpeechChunk):
            self._on_speech_chunk(response, event)
        elif isinstance(event, ResponseFinished):
            details = None
            if event.status == "incomplete":
                details = {"type": "incomplete", "reason": "max_output_tokens"}
            usage = render_usage(event.input_tokens, event.reasoning_tokens, event.answer_tokens)
            self._finish(event.status, details, usage, event.stage_seconds)

    def on_response_failed(self, response_id: str) -> list[Output]:
        """The responder raised: end the response as failed, tell the client without details."""
        if self._speculation is not None and self._speculation.response.id == response_id:
            self._speculation = None  # nobody saw it; the turn will start afresh when it commits
        elif self.response is not None and self.response.id == response_id:
            error = {"type": "server_error", "code": str(ErrorCode.SERVER_ERROR)}
            self._finish("failed", {"type": "failed", "error": error}, None)
            self._error(
                ProtocolError(
                    ErrorCode.SERVER_ERROR,
                    f"response {response_id} failed inside the server; it has been logged",
                ),
                None,
            )
        return self._drain()

    def close(self, code: ErrorCode, message: str, ws_code: int = 1000) -> list[Output]:
        """End the session (expiry, idle, shutdown): cancel, tell the client, then close."""
        if not self.closed:
            self._discard_speculation()
            if self.response is not None:
                self._cancel("client_cancelled")
            self._error(ProtocolError(code, message), None)
            self._out.append(Close(ws_code, message))
            self.closed = True
        return self._drain()

    # --- client events -----------------------------------------------------------------

    def _on_session_update(self, event: m.SessionUpdate, now: float) -> None:
        config = apply_update(self.config, event.session, self.voices)
        if config.input_format != self.config.input_format:
            self._decoder = InputDecoder(config.input_format)
        vad_changed = config.turn_detection != self.config.turn_detection
        self.config = config
        if vad_changed:
            self._vad = self._make_vad()
        self._emit("session.updated", session=render_session(self.id, config, self.beta))

    def _on_input_audio_buffer_append(self, event: m.InputAudioBufferAppend, now: float) -> None:
        raw = b64decode(event.audio, "audio")
        fmt = self.config.input_format
        if self._buffer.duration_ms + fmt.duration_ms(len(raw)) > self.limits.max_input_buffer_ms:
            raise ProtocolError(
                ErrorCode.INPUT_AUDIO_BUFFER_FULL,
                f"the input audio buffer holds {self._buffer.duration_ms:.0f} ms, the limit is "
                f"{self.limits.max_input_buffer_ms} ms; commit or clear it before appending more",
                "audio",
            )
        pcm = self._decoder.feed(raw)
        self._buffer.append(pcm)
        self.stats.audio_in_ms += len(pcm) / SAMPLES_PER_MS
        if self._vad is not None:
            self._detect_turns(pcm, now)

    def _on_input_audio_buffer_commit(self, event: m.InputAudioBufferCommit, now: float) -> None:
        if self._buffer.empty:
            raise ProtocolError(
                ErrorCode.INPUT_AUDIO_BUFFER_COMMIT_EMPTY,
                "the input audio buffer is empty; append audio before committing",
            )
        self._commit(self._buffer.start, self._buffer.end)
        self._vad = self._make_vad()

    def _on_input_audio_buffer_clear(self, event: m.InputAudioBufferClear, now: float) -> None:
        self._buffer.clear()
        self._vad = self._make_vad()
        self._emit("input_audio_buffer.cleared")

    def _on_conversation_item_create(self, event: m.ConversationItemCreate, now: float) -> None:
        item = item_from_client(
            event.item, self.config.input_format, (existing.id for existing in self.items)
        )
        position = len(self.items)
        previous = event.previous_item_id
        if previous == "root":
            position = 0
        elif previous is not None:
            position = self._index_of(previous, "previous_item_id") + 1
        self.items.insert(position, item)
        self._announce_item(item, self.items[position - 1].id if position else None)

    def _on_conversation_item_retrieve(self, event: m.ConversationItemRetrieve, now: float) -> None:
        item = self.items[self._index_of(event.item_id, "item_id")]
        fmt = self.config.output_format if item.role == "assistant" else self.config.input_format
        self._emit("conversation.item.retrieved", item=render_item(item, self.beta, fmt))

    def _on_conversation_item_delete(self, event: m.ConversationItemDelete, now: float) -> None:
        index = self._index_of(event.item_id, "item_id")
        if self.response is not None and self.response.item.id == event.item_id:
            raise ProtocolError(
                ErrorCode.ITEM_IN_PROGRESS,
                f"item {event.item_id} is being written by response {self.response.id}; "
                "cancel the response first",
                "item_id",
            )
        del self.items[index]
        self._emit("conversation.item.deleted", item_id=event.item_id)

    def _on_conversation_item_truncate(self, event: m.ConversationItemTruncate, now: float) -> None:
        item = self.items[self._index_of(event.item_id, "item_id")]
        if item.role != "assistant" or item.kind != "audio":
            raise ProtocolError(
                ErrorCode.TRUNCATE_INVALID_ITEM,
                f"item {item.id} is not an assistant audio message; only those can be truncated",
                "item_id",
            )
        if event.content_index != 0:
            raise ProtocolError(
                ErrorCode.INVALID_VALUE,
                f"item {item.id} has one content part; content_index must be 0",
                "content_index",
            )
        in_progress = self.response is not None and self.response.item is item
        sent_ms = item.audio_ms
        if event.audio_end_ms > sent_ms and not in_progress:
            raise ProtocolError(
                ErrorCode.TRUNCATE_PAST_END,
                f"item {item.id} has {sent_ms} ms of audio; audio_end_ms must be <= {sent_ms}",
                "audio_end_ms",
            )
        if in_progress:  # the listener stopped here: the rest will not be heard
            self._cancel("client_cancelled")
        end_ms = min(event.audio_end_ms, sent_ms)  # clamp to what was sent
        truncate(item, end_ms)
        self._emit(
            "conversation.item.truncated",
            item_id=item.id,
            content_index=0,
            audio_end_ms=end_ms,
        )

    def _on_response_create(self, event: m.ResponseCreate, now: float) -> None:
        if self.response is not None:
            raise ProtocolError(
                ErrorCode.ACTIVE_RESPONSE,
                f"response {self.response.id} is in progress; wait for its response.done "
                "or send response.cancel",
            )
        options = response_options(self.config, event.response, self.voices)
        self._start_response(options, speech_end_at=None, committed_at=now)

    def _on_response_cancel(self, event: m.ResponseCancel, now: float) -> None:
        response = self.response
        if response is None or event.response_id not in (None, response.id):
            raise ProtocolError(
                ErrorCode.NO_ACTIVE_RESPONSE,
                "there is no response in progress"
                + (f" with id {event.response_id}" if event.response_id else ""),
                "response_id" if event.response_id else None,
            )
        self._cancel("client_cancelled")

    def _on_output_audio_buffer_clear(self, event: m.OutputAudioBufferClear, now: float) -> None:
        if self.response is not None:
            self._cancel("client_cancelled")
        self._emit("output_audio_buffer.cleared", response_id=self.last_response_id or "")

    # --- turn detection ----------------------------------------------------------------

    def _make_vad(self) -> TurnDetector | None:
        vad = self.config.turn_detection
        if vad is None:
            return None
        return TurnDetector(vad, start_ms=int(self._buffer.clock_ms))

    def _detect_turns(self, pcm: np.ndarray, now: float) -> None:
        assert self._vad is not None
        events = self._vad.feed(pcm)
        if self._vad.voiced_in_last_feed:
            self._last_speech_at = now
        for vad_event in events:
            if isinstance(vad_event, SpeechStarted):
                self._on_speech_started(vad_event.audio_start_ms)
            else:
                self._on_speech_stopped(vad_event.audio_end_ms, now)
        if self._vad.in_speech:
            self._speculate()
            self._prepare_ahead()
        else:
            self._check_idle(now)
            # keep only what a coming onset may reach back to
            keep_ms = self._vad.config.prefix_padding_ms + (START_WINDOW_FRAMES + 1) * FRAME_MS
            self._buffer.drop_before(self._buffer.end - keep_ms * SAMPLES_PER_MS)

    def _on_speech_started(self, audio_start_ms: int) -> None:
        self._speech_start_ms = audio_start_ms
        self._prepared_parts = 0
        self._idle_since_ms = None
        self._emit(
            "input_audio_buffer.speech_started",
            audio_start_ms=audio_start_ms,
            item_id=self._next_item_id,
        )
        vad = self.config.turn_detection
        if self.response is not None and vad is not None and vad.interrupt_response:
            self._cancel("turn_detected")

    def _on_speech_stopped(self, audio_end_ms: int, now: float) -> None:
        self._emit(
            "input_audio_buffer.speech_stopped",
            audio_end_ms=audio_end_ms,
            item_id=self._next_item_id,
        )
        self._commit(self._speech_start_ms * SAMPLES_PER_MS, audio_end_ms * SAMPLES_PER_MS)
        vad = self.config.turn_detection
        if vad is None or not vad.create_response or self.response is not None:
            self._discard_speculation()
        elif self._speculation is not None:
            self._confirm_speculation(self._last_speech_at, now)
        else:
            options = response_options(self.config, None, self.voices)
            self._start_response(options, speech_end_at=self._last_speech_at, committed_at=now)

    def _speculate(self) -> None:
        """In a pause inside a turn: drop a guess that speech has overtaken, or start one."""
        assert self._vad is not None
        if self._speculation is not None and self._vad.voiced_in_last_feed:
            self._discard_speculation()
        vad = self.config.turn_detection
        if (
            self._speculate_after_ms is None
            or self._speculation is not None
            or self.response is not None
            or vad is None
            or not vad.create_response
            or self._vad.silent_ms < self._speculate_after_ms
        ):
            return
        audio = self._buffer.slice(self._speech_start_ms * SAMPLES_PER_MS, self._buffer.end)
        turn = Turn("user", audio=to_model_audio(audio), item_id=self._next_item_id)
        options = response_options(self.config, None, self.voices)
        response, request = self._prepare_response(options, [turn])
        self._speculation = Speculation(response, [])
        self._out.append(
            StartResponse(response.id, request, _mode(options), None, None, speculative=True)
        )

    def _prepare_ahead(self) -> None:
        """Every `prepare_every_ms` of the turn in progress: let the responder work ahead."""
        if self._prepare_every_ms is None:
            return
        turn_ms = self._buffer.end / SAMPLES_PER_MS - self._speech_start_ms
        parts = int(turn_ms // self._prepare_every_ms)
        if parts <= self._prepared_parts:
            return
        self._prepared_parts = parts
        audio = self._buffer.slice(self._speech_start_ms * SAMPLES_PER_MS, self._buffer.end)
        turn = Turn("user", audio=to_model_audio(audio), item_id=self._next_item_id)
        options = response_options(self.config, None, self.voices)
        _, request = self._prepare_response(options, [turn])
        self._out.append(PrepareResponse(request))

    def _confirm_speculation(self, speech_end_at: float | None, committed_at: float) -> None:
        speculation = self._speculation
        assert speculation is not None
        self._speculation = None
        response = speculation.response
        self._announce_response(response)
        self._out.append(ConfirmResponse(response.id, speech_end_at, committed_at))
        for event in speculation.held:
            if self.response is not response:
                break  # it finished among the held events
            self._apply(response, event)

    def _discard_speculation(self) -> None:
        if self._speculation is not None:
            self._out.append(CancelResponse(self._speculation.response.id, "speculation_discarded"))
            self._speculation = None

    def _check_idle(self, now: float) -> None:
        """`idle_timeout_ms` on the audio clock: it starts when the last response's audio would
        have finished playing (its first audio plus its duration) and counts input audio without
        speech. A client that stops streaming stops this clock (OpenAI's runs on wall time)."""
        vad = self.config.turn_detection
        if vad is None or vad.idle_timeout_ms is None or self.response is not None:
            return
        clock_ms = self._buffer.clock_ms
        if self._idle_since_ms is None or clock_ms - self._idle_since_ms < vad.idle_timeout_ms:
            return
        self._emit(
            "input_audio_buffer.timeout_triggered",
            audio_start_ms=int(self._idle_since_ms),
            audio_end_ms=int(clock_ms),
            item_id=self._next_item_id,
        )
        self._idle_since_ms = None
        self._commit(self._buffer.start, self._buffer.end)
        options = response_options(self.config, None, self.voices)
        self._start_response(options, speech_end_at=None, committed_at=now)

    def _commit(self, begin: int, end: int) -> None:
        pcm = self._buffer.slice(begin, end)
        self._buffer.drop_before(end)
        item = Item(self._next_item_id, "user", "audio", audio=pcm, sample_rate=MODEL_SAMPLE_RATE)
        self._next_item_id = new_id("item")
        previous = self.items[-1].id if self.items else None
        self.items.append(item)
        self._emit("input_audio_buffer.committed", item_id=item.id, previous_item_id=previous)
        self._announce_item(item, previous)

    # --- responses ---------------------------------------------------------------------

    def _start_response(
        self, options: ResponseOptions, speech_end_at: float | None, committed_at: float
    ) -> None:
        response, request = self._prepare_response(options, [])
        self._announce_response(response)
        self._out.append(
            StartResponse(response.id, request, _mode(options), speech_end_at, committed_at)
        )

    def _prepare_response(
        self, options: ResponseOptions, extra_turns: list[Turn]
    ) -> tuple[ActiveResponse, ResponseRequest]:
        """The response and what the responder is asked; nothing is emitted yet."""
        speak = "audio" in options.output_modalities
        request = ResponseRequest(
            turns=[turn_of(item) for item in self.items] + extra_turns,
            instructions=options.instructions or None,
            speak=speak,
            voice=options.voice or None,
            speech_rate=self.config.speed,
            max_output_tokens=options.max_output_tokens,
            temperature=options.temperature,
            reasoning_effort=options.reasoning_effort,
        )
        item = Item(
            new_id("item"),
            "assistant",
            "audio" if speak else "text",
            text="",
            audio=np.zeros(0, np.int16) if speak else None,
            sample_rate=TTS_SAMPLE_RATE,
            status="in_progress",
        )
        encoder = OutputEncoder(options.output_format) if speak else None
        return ActiveResponse(new_id("resp"), options, item, encoder), request

    def _announce_response(self, response: ActiveResponse) -> None:
        """The response becomes the session's: its item joins the conversation, events go out."""
        item, options = response.item, response.options
        previous = self.items[-1].id if self.items else None
        self.items.append(item)
        self.response = response
        self.last_response_id = response.id
        self._emit("response.created", response=render_response(response.id, options, self.beta))
        self._emit(
            "response.output_item.added",
            response_id=response.id,
            output_index=0,
            item=render_item(item, self.beta),
        )
        self._announce_item(item, previous, done=False)
        self._emit_part("response.content_part.added", response, part=render_part(item))

    def _on_speech_chunk(self, response: ActiveResponse, event: SpeechChunk) -> None:
        if response.encoder is None:
            return  # a text-only response has no audio to send
        item = response.item
        pcm = event.chunk.pcm.astype(np.int16)
        if response.first_audio_clock_ms is None:
            response.first_audio_clock_ms = self._buffer.clock_ms
        item.audio = np.concatenate([item.audio, pcm]) if item.audio is not None else pcm
        item.words.extend(event.chunk.words)
        self.stats.audio_out_ms += len(pcm) * 1000 / TTS_SAMPLE_RATE
        data = response.encoder.feed(pcm)
        if data:
            self._emit_part(
                "response.output_audio.delta", response, delta=base64.b64encode(data).decode()
            )

    def _cancel(self, reason: str) -> None:
        assert self.response is not None
        self._out.append(CancelResponse(self.response.id, reason))
        self._finish("cancelled", {"type": "cancelled", "reason": reason}, None)

    def _finish(
        self,
        status: str,
        details: dict[str, Any] | None,
        usage: dict[str, Any] | None,
        stage_seconds: dict[str, float] | None = None,
    ) -> None:
        response = self.response
        assert response is not None
        item = response.item
        item.status = "completed" if status == "completed" else "incomplete"
        if response.reasoning:
            self._emit_part("response.reasoning_text.done", response, text=response.reasoning)
        if response.encoder is not None:
            tail = response.encoder.flush() if status != "cancelled" else b""
            if tail:
                self._emit_part(
                    "response.output_audio.delta", response, delta=base64.b64encode(tail).decode()
                )
            self._emit_part("response.output_audio.done", response)
            self._emit_part(
                "response.output_audio_transcript.done", response, transcript=item.text or ""
            )
        else:
            self._emit_part("response.output_text.done", response, text=item.text or "")
        self._emit_part("response.content_part.done", response, part=render_part(item))
        rendered = render_item(item, self.beta)
        self._emit(
            "response.output_item.done", response_id=response.id, output_index=0, item=rendered
        )
        self._emit("conversation.item.done", item=rendered)
        self._emit(
            "response.done",
            response=render_response(
                response.id,
                response.options,
                self.beta,
                status=status,
                status_details=details,
                output=[rendered],
                usage=usage,
                stage_seconds=stage_seconds,
            ),
        )
        self.response = None
        clock_ms = self._buffer.clock_ms
        played_from = response.first_audio_clock_ms or clock_ms
        self._idle_since_ms = max(clock_ms, played_from + item.audio_ms)

    # --- helpers -----------------------------------------------------------------------

    def _index_of(self, item_id: str, param: str) -> int:
        for index, item in enumerate(self.items):
            if item.id == item_id:
                return index
        raise ProtocolError(
            ErrorCode.ITEM_NOT_FOUND, f"no item with id {item_id!r} in the conversation", param
        )

    def _announce_item(self, item: Item, previous: str | None, done: bool = True) -> None:
        rendered = render_item(item, self.beta)
        self._emit("conversation.item.added", item=rendered, previous_item_id=previous)
        if done:
            self._emit("conversation.item.done", item=rendered, previous_item_id=previous)

    def _emit_part(self, type_: str, response: ActiveResponse, **fields: Any) -> None:
        self._emit(
            type_,
            response_id=response.id,
            item_id=response.item.id,
            output_index=0,
            content_index=0,
            **fields,
        )

    def _emit(self, type_: str, **fields: Any) -> None:
        if self.beta:
            if type_ in BETA_EVENT_NAMES and BETA_EVENT_NAMES[type_] is None:
                return
            type_ = BETA_EVENT_NAMES.get(type_) or type_
        self._out.append({"type": type_, "event_id": new_id("event"), **fields})

    def _error(self, error: ProtocolError, client_event_id: str | None) -> None:
        self._out.append(
            error_event(
                new_id("event"),
                error.code,
                error.message,
                client_event_id=client_event_id,
                param=error.param,
            )
        )

    def _drain(self) -> list[Output]:
        out, self._out = self._out, []
        return out


def _mode(options: ResponseOptions) -> str:
    """The `mode` label of the latency metrics."""
    return options.reasoning_effort or "default"
