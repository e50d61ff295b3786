"""The Realtime session as a state machine with no I/O: client messages in, server events and
actions out (in the style of h11 and websockets' sans-I/O core).

Rules of the design:
- Every public method returns the list of outputs it caused, in the order they must be acted
  on: server events (JSON-ready dicts, already named for the client's dialect) and actions
  (`StartResponse`, `CancelResponse`, `Transcribe`, `JudgeTurnEnd`, `Close`, ...) for the adapter
  to carry out.
- Bad input never raises and never changes state: it yields one `error` event naming the
  client's `event_id` and what to fix (see errors.py), and the session goes on. A
  `session.update` applies field by field: a bad field is refused alone.
- Time comes in as arguments: the audio clock is the input audio itself (milliseconds of
  audio appended), wall time (`now`, seconds) only timestamps latency measurements.
- Turn-taking (the input buffer, speech detection, speculation, listening ahead, idle) is its
  own machine, `streaming.turns.machine.TurnTaking`; the session turns its events into
  Realtime events and responses.
- A response belongs to the session from `StartResponse` until its `response.done`. After a
  cancel, late events of that response are ignored, so the adapter may close the responder
  at leisure. Its output items appear as the model writes them: a message when the answer's
  first text or audio comes, a function call when the model starts one.
- Speculation (docs/ARCHITECTURE.md): a pause starts the response on the audio so far, before
  the turn closes. Its events are held back; when the turn commits they go out
  (`ConfirmResponse`) and the response goes on live; if speech resumes, or the client changes
  anything, it is thrown away (`CancelResponse` with reason `speculation_discarded`) and the
  client never hears of it.
- Reasoning goes only to clients that ask for it (`include: ["response.reasoning_text"]`);
  user transcripts only where `audio.input.transcription` is set.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from server.protocol import models as m
from server.protocol.audio import TTS_SAMPLE_RATE, InputDecoder, OutputEncoder, to_model_audio
from server.protocol.config import (
    ResponseOptions,
    SessionConfig,
    SessionLimits,
    apply_update,
    response_options,
)
from server.protocol.errors import (
    NO_ACTIVE_RESPONSE_MESSAGE,
    ErrorCode,
    ProtocolError,
    error_event,
    error_object,
)
from server.protocol.items import (
    Item,
    check_item_size,
    function_call_item,
    item_from_client,
    model_turns,
    new_id,
    truncate,
)
from server.protocol.parse import b64decode, parse_json, sniff_event_id, validate
from server.protocol.render import (
    BETA_EVENT_NAMES,
    render_item,
    render_part,
    render_response,
    render_session,
    render_usage,
)
from streaming.responder import (
    AnswerDelta,
    ReasoningDelta,
    ResponseEvent,
    ResponseFinished,
    ResponseRequest,
    SpeechChunk,
    ToolCallDelta,
    ToolCalled,
    Turn,
)
from streaming.tool_calls import canonical_arguments
from streaming.turns import machine as turns
from streaming.turns.buffer import SAMPLES_PER_MS

DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # ~20 s of 24 kHz PCM16 in base64 per message
DEFAULT_MAX_INPUT_BUFFER_MS = 10 * 60 * 1000  # a turn longer than this is not a conversation
DEFAULT_MAX_ITEMS = 4096  # conversation items a session may hold
DEFAULT_MAX_ITEM_CHARS = 256 * 1024  # the text (or function output) of one item
# A reply that could have played this long was heard: speech after that is a barge-in, never a
# merge, however soon after the commit it comes (a client playing the reply in real time from
# its first delta; the session's clock is the input audio's).
MERGE_MAX_HEARD_MS = 800

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
    max_items: int = DEFAULT_MAX_ITEMS
    max_item_chars: int = DEFAULT_MAX_ITEM_CHARS
    config: SessionLimits = field(default_factory=SessionLimits)


# --- actions -------------------------------------------------------------------------------


@dataclass
class StartResponse:
    response_id: str
    request: ResponseRequest
    mode: str  # the metrics label: the reasoning effort
    speech_end_at: float | None  # arrival of the last audio frame VAD classed as speech
    committed_at: float | None  # when the turn was committed (or response.create arrived)
    speculative: bool = False  # events held back until `ConfirmResponse`, or discarded
    detector: str = "client"  # what closed the turn: server_vad, semantic_vad, idle, client


@dataclass
class ConfirmResponse:
    """A speculative response became real: its turn committed at `committed_at`."""

    response_id: str
    speech_end_at: float | None
    committed_at: float
    detector: str = "server_vad"


@dataclass
class PrepareResponse:
    """The turn in progress grew by another `PREPARE_EVERY_MS`: the responder may work ahead on
    `request` (the conversation with the audio so far). Nothing goes to the client."""

    request: ResponseRequest


@dataclass
class CancelResponse:
    response_id: str
    # "turn_detected" (barge-in), "turn_merged" (the user went on: `TurnsMerged`),
    # "client_cancelled", "speculation_discarded"
    reason: str


@dataclass
class Transcribe:
    """Write down user audio item `item_id` (16 kHz float32 `audio`) and report it through
    `on_transcript_delta` / `on_transcript_done` / `on_transcript_failed`. Where
    `after_response_id` is set, that response's first audio should go out first."""

    item_id: str
    audio: np.ndarray
    after_response_id: str | None = None


@dataclass
class JudgeTurnEnd:
    """Ask the end-of-turn model whether `audio` (the turn so far, 16 kHz int16) is a complete
    utterance, off the event loop, and answer with `on_turn_verdict(request_id, probability)`."""

    request_id: int
    audio: np.ndarray


@dataclass
class Close:
    code: int  # WebSocket close code
    reason: str


@dataclass
class TurnsMerged:
    """Speech came back right after a detector closed a turn: the two are one turn, and the
    reply to the first was withdrawn after `heard_ms` of its audio could have played (for the
    metrics; the events that tell the client come with it)."""

    detector: str
    heard_ms: float


Action = (
    StartResponse
    | ConfirmResponse
    | CancelResponse
    | PrepareResponse
    | Transcribe
    | JudgeTurnEnd
    | Close
    | TurnsMerged
)
Output = dict[str, Any] | Action


@dataclass
class SessionStats:
    audio_in_ms: float = 0.0
    audio_out_ms: float = 0.0
    speech_heard_ms: float = 0.0  # audio inside turns that voice activity detection found


@dataclass
class ActiveResponse:
    id: str
    options: ResponseOptions
    encoder: OutputEncoder | None  # None: a text-only response
    message_id: str = field(default_factory=lambda: new_id("item"))
    message: Item | None = None  # the spoken (or text) answer, once it begins
    calls: dict[int, Item] = field(default_factory=dict)  # function calls by their index
    output: list[Item] = field(default_factory=list)  # items in the order they began
    reasoning: str = ""
    first_audio_clock_ms: float | None = None

    def index_of(self, item: Item) -> int:
        return self.output.index(item)


@dataclass
class Speculation:
    response: ActiveResponse
    held: list[ResponseEvent]  # the responder's events, until the turn commits


@dataclass
class ClosedTurn:
    """A user turn a detector closed, and the reply begun for it: while the turn-taking machine
    may still merge the next speech into it."""

    item_id: str
    detector: str
    reply: ActiveResponse | None


@dataclass
class Merge:
    """A turn that took an earlier one's audio: when it commits, the earlier user item and the
    withdrawn reply's items leave the conversation (until then they stay, so that a client may
    still truncate what it played, but no request sees them)."""

    item_id: str  # the merged turn's
    withdrawn: list[str]  # item ids: the reply's output, then the earlier user item


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
        prepare_every_ms: int | None = turns.PREPARE_EVERY_MS,
        vad: str = "webrtc",
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
        self._out: list[Output] = []
        self._decoder = InputDecoder(config.input_format)
        self.turns = turns.TurnTaking(
            config.turn_detection,
            lambda: new_id("item"),
            vad=vad,
            speculate_after_ms=speculate_after_ms,
            prepare_every_ms=prepare_every_ms,
        )
        self._last_speech_at: float | None = None
        self._speculation: Speculation | None = None
        self._closed_turn: ClosedTurn | None = None
        self._last_reply: ActiveResponse | None = None  # the latest response announced
        self._merge: Merge | None = None
        self._handlers: dict[str, Callable[[Any, float], None]] = {
            "session.update": self._on_session_update,
            "input_audio_buffer.append": self._on_input_audio_buffer_append,
            "input_audio_buffer.commit": self._on_input_audio_buffer_commit,
            "input_audio_buffer.clear": self._on_input_audio_buffer_clear,
            "conversation.item.create": self._on_conversation_item_create,
            "conversation.item.retrieve": self._on_conversation_item_retrieve,
            "conversation.item.delete": self._on_conversation_item_delete,
            "conversation.item.truncate": self._on_conversation_item_truncate,
            "response.create": self._on_response_create,
            "response.cancel": self._on_response_cancel,
            "output_audio_buffer.clear": self._on_output_audio_buffer_clear,
        }
        assert set(self._handlers) == set(m.CLIENT_EVENTS)

    # --- public API --------------------------------------------------------------------

    def start(self) -> list[Output]:
        self._emit("session.created", session=self._render_session())
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
            self._handlers[type_](event, now)
            if type_ in CHANGES_CONTEXT:
                self._discard_speculation()  # the client changed what the guess was based on
                self._seal_turn()  # and what a merge would undo
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

    def on_response_failed(
        self,
        response_id: str,
        code: ErrorCode = ErrorCode.SERVER_ERROR,
        message: str | None = None,
    ) -> list[Output]:
        """The responder raised. With a client `code` the request itself could not be served
        (e.g. the conversation does not fit the model) and `message` says why; a server-side
        failure tells the client no more than that (the details are logged)."""
        if self._speculation is not None and self._speculation.response.id == response_id:
            self._speculation = None  # nobody saw it; the turn will start afresh when it commits
        elif self.response is not None and self.response.id == response_id:
            message = message or f"response {response_id} failed inside the server; it is logged"
            event = error_event(new_id("event"), code, message)
            self._finish("failed", {"type": "failed", "error": event["error"]}, None)
            self._out.append(event)
        return self._drain()

    def on_turn_verdict(self, request_id: int, probability: float, now: float) -> list[Output]:
        """The end-of-turn model's answer to `JudgeTurnEnd(request_id)`."""
        if not self.closed:
            self._turn_events(self.turns.verdict(request_id, probability), now)
        return self._drain()

    def on_transcript_delta(self, item_id: str, text: str) -> list[Output]:
        if self._transcribed(item_id) is not None and text:
            self._emit(
                "conversation.item.input_audio_transcription.delta",
                item_id=item_id,
                content_index=0,
                delta=text,
            )
        return self._drain()

    def on_transcript_done(
        self, item_id: str, transcript: str, usage: dict[str, Any]
    ) -> list[Output]:
        item = self._transcribed(item_id)
        if item is not None:
            item.text = transcript.strip()
            self._emit(
                "conversation.item.input_audio_transcription.completed",
                item_id=item_id,
                content_index=0,
                transcript=item.text,
                usage=usage,
            )
        return self._drain()

    def on_transcript_failed(self, item_id: str, message: str) -> list[Output]:
        if self._transcribed(item_id) is not None:
            self._emit(
                "conversation.item.input_audio_transcription.failed",
                item_id=item_id,
                content_index=0,
                error=error_object(ErrorCode.TRANSCRIPTION_FAILED, message),
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
        config, errors = apply_update(self.config, event.session, self.voices, self.limits.config)
        for error in errors:
            self._error(error, event.event_id)
        if config.input_format != self.config.input_format:
            self._decoder = InputDecoder(config.input_format)
        detection_changed = config.turn_detection != self.config.turn_detection
        self.config = config
        if detection_changed:
            self.turns.configure(config.turn_detection)
            self._merge = None  # the turn in progress starts afresh, without the earlier one
        self._emit("session.updated", session=self._render_session())

    def _on_input_audio_buffer_append(self, event: m.InputAudioBufferAppend, now: float) -> None:
        raw = b64decode(event.audio, "audio")
        fmt = self.config.input_format
        held_ms = self.turns.buffer.duration_ms
        if held_ms + fmt.duration_ms(len(raw)) > self.limits.max_input_buffer_ms:
            raise ProtocolError(
                ErrorCode.INPUT_AUDIO_BUFFER_FULL,
                f"the input audio buffer holds {held_ms:.0f} ms, the limit is "
                f"{self.limits.max_input_buffer_ms} ms; commit or clear it before appending more",
                "audio",
            )
        pcm = self._decoder.feed(raw)
        self.stats.audio_in_ms += len(pcm) / SAMPLES_PER_MS
        self._seal_if_heard(self.turns.buffer.clock_ms + len(pcm) / SAMPLES_PER_MS)
        in_turn = self.turns.state not in (turns.TurnState.MANUAL, turns.TurnState.LISTENING)
        events = self.turns.append(pcm)
        if in_turn or self.turns.voiced_in_last_feed:
            self.stats.speech_heard_ms += len(pcm) / SAMPLES_PER_MS
        if self.turns.voiced_in_last_feed:
            self._last_speech_at = now
        self._turn_events(events, now)

    def _on_input_audio_buffer_commit(self, event: m.InputAudioBufferCommit, now: float) -> None:
        if self.turns.buffer.empty:
            raise ProtocolError(
                ErrorCode.INPUT_AUDIO_BUFFER_COMMIT_EMPTY,
                "the input audio buffer is empty; append audio before committing",
            )
        self._check_room()
        self._turn_events(self.turns.commit(), now)

    def _on_input_audio_buffer_clear(self, event: m.InputAudioBufferClear, now: float) -> None:
        self._turn_events(self.turns.clear(), now)
        self._merge = None  # the merged turn will not commit: the earlier one stands
        self._emit("input_audio_buffer.cleared")

    def _on_conversation_item_create(self, event: m.ConversationItemCreate, now: float) -> None:
        self._check_room()
        item = item_from_client(event.item, self.config.input_format, self.items)
        check_item_size(item, self.limits.max_item_chars, self.limits.max_input_buffer_ms)
        position = len(self.items)
        previous = event.previous_item_id
        if previous == "root":
            position = 0
        elif previous is not None:
            position = (
                self._index_of(
                    previous, "previous_item_id", ErrorCode.ITEM_CREATE_INVALID_PREVIOUS_ITEM_ID
                )
                + 1
            )
        self.items.insert(position, item)
        self._announce_item(item, self.items[position - 1].id if position else None)

    def _on_conversation_item_retrieve(self, event: m.ConversationItemRetrieve, now: float) -> None:
        index = self._index_of(event.item_id, "item_id", ErrorCode.ITEM_RETRIEVE_INVALID_ITEM_ID)
        item = self.items[index]
        fmt = self.config.output_format if item.role == "assistant" else self.config.input_format
        self._emit("conversation.item.retrieved", item=render_item(item, self.beta, fmt))

    def _on_conversation_item_delete(self, event: m.ConversationItemDelete, now: float) -> None:
        index = self._index_of(event.item_id, "item_id", ErrorCode.ITEM_DELETE_INVALID_ITEM_ID)
        response = self.response
        if response is not None and any(item.id == event.item_id for item in response.output):
            raise ProtocolError(
                ErrorCode.ITEM_IN_PROGRESS,
                f"item {event.item_id} is being written by response {response.id}; "
                "cancel the response first",
                "item_id",
            )
        del self.items[index]
        self._emit("conversation.item.deleted", item_id=event.item_id)

    def _on_conversation_item_truncate(self, event: m.ConversationItemTruncate, now: float) -> None:
        index = self._index_of(event.item_id, "item_id", ErrorCode.ITEM_TRUNCATE_INVALID_ITEM_ID)
        item = self.items[index]
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
        in_progress = self.response is not None and self.response.message is item
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
        options = response_options(self.config, event.response, self.voices, self.limits.config)
        self._start_response(options, speech_end_at=None, committed_at=now)

    def _on_response_cancel(self, event: m.ResponseCancel, now: float) -> None:
        # A cancel that finds no response in progress is answered as OpenAI answers it: the error
        # `response_cancel_not_active`, worded as OpenAI words it, and nothing else changes. It
        # is a race every client meets: a barge-in's `speech_started` ends the response here
        # (`interrupt_response`) while the client, still playing that response's audio, sends
        # `response.cancel` for it; or the response finished generating (far faster than it
        # plays) just before the cancel came. The clients know it as benign and match on it:
        # pipecat on the code, livekit-agents on the message's "Cancellation failed" prefix
        # (any other wording it logs at ERROR and emits as an error), others on the whole
        # message. A response already generated is not cancelled after the fact: this server,
        # like OpenAI's over a WebSocket, does not know what the client has played; the
        # client's `conversation.item.truncate` cuts the reply to what was heard.
        response = self.response
        if response is None or event.response_id not in (None, response.id):
            raise ProtocolError(
                ErrorCode.NO_ACTIVE_RESPONSE,
                NO_ACTIVE_RESPONSE_MESSAGE
                + (f" with id {event.response_id}" if event.response_id else ""),
                "response_id" if event.response_id else None,
            )
        self._cancel("client_cancelled")

    def _on_output_audio_buffer_clear(self, event: m.OutputAudioBufferClear, now: float) -> None:
        if self.response is not None:
            self._cancel("client_cancelled")
        last = self._last_reply
        self._emit("output_audio_buffer.cleared", response_id=last.id if last else "")

    # --- turn-taking -------------------------------------------------------------------

    def _turn_events(self, events: list[turns.TurnEvent], now: float) -> None:
        for event in events:
            if isinstance(event, turns.SpeechStarted):
                self._on_speech_started(event)
            elif isinstance(event, turns.SpeechStopped):
                self._emit(
                    "input_audio_buffer.speech_stopped",
                    audio_end_ms=event.audio_end_ms,
                    item_id=event.item_id,
                )
            elif isinstance(event, turns.TurnCommitted):
                self._on_turn_committed(event, now)
            elif isinstance(event, turns.Speculate):
                self._speculate(event)
            elif isinstance(event, turns.Resumed):
                self._discard_speculation()
            elif isinstance(event, turns.Prepare):
                options = response_options(self.config, None, self.voices)
                turn = Turn("user", audio=to_model_audio(event.audio), item_id=event.item_id)
                self._out.append(PrepareResponse(self._request(options, [turn])))
            elif isinstance(event, turns.AskEndOfTurn):
                self._out.append(JudgeTurnEnd(event.request_id, event.audio))
            elif isinstance(event, turns.IdleTimeout):
                self._emit(
                    "input_audio_buffer.timeout_triggered",
                    audio_start_ms=event.audio_start_ms,
                    audio_end_ms=event.audio_end_ms,
                    item_id=event.item_id,
                )

    def _on_speech_started(self, event: turns.SpeechStarted) -> None:
        self._emit(
            "input_audio_buffer.speech_started",
            audio_start_ms=event.audio_start_ms,
            item_id=event.item_id,
        )
        closed, self._closed_turn = self._closed_turn, None
        if event.merges is not None and closed is not None and closed.item_id == event.merges:
            self._withdraw_reply(event.item_id, closed)
            return
        detection = self.config.turn_detection
        if self.response is not None and detection is not None and detection.interrupt_response:
            self._cancel("turn_detected")

    def _withdraw_reply(self, item_id: str, closed: ClosedTurn) -> None:
        """The user went on speaking: the reply to the turn so far answers half a question.
        It stops as a barge-in stops it (the client, told by `speech_started`, stops playing and
        truncates the item to what it played, as it does on any barge-in; `heard_ms` is only the
        server's estimate, for the metrics), and leaves the conversation with the earlier user
        item when the whole turn commits."""
        reply = closed.reply
        heard_ms = 0.0
        if reply is not None:
            if self.response is reply:
                self._cancel("turn_merged")
            message = reply.message
            if message is not None and reply.first_audio_clock_ms is not None:
                since_ms = self.turns.buffer.clock_ms - reply.first_audio_clock_ms
                heard_ms = max(0.0, min(since_ms, message.audio_ms))
        withdrawn = [item.id for item in reply.output] if reply is not None else []
        self._merge = Merge(item_id, [*withdrawn, closed.item_id])
        self._out.append(TurnsMerged(closed.detector, heard_ms))

    def _on_turn_committed(self, event: turns.TurnCommitted, now: float) -> None:
        merge, self._merge = self._merge, None
        if merge is not None and merge.item_id == event.item_id:
            for item_id in merge.withdrawn:
                if self._item(item_id) is not None:
                    self.items = [item for item in self.items if item.id != item_id]
                    self._emit("conversation.item.deleted", item_id=item_id)
        if len(self.items) >= self.limits.max_items:
            self._discard_speculation()
            self._error(self._full_error(), None)
            return
        item = Item(event.item_id, "user", "audio", audio=event.audio)
        previous = self.items[-1].id if self.items else None
        self.items.append(item)
        self._emit("input_audio_buffer.committed", item_id=item.id, previous_item_id=previous)
        self._announce_item(item, previous)
        if event.by != "client":
            reply_before = self._last_reply
            self._respond_to_turn(event.by, now)
            detection = self.config.turn_detection
            if event.by != "idle" and detection is not None and detection.interrupt_response:
                # the reply begun for this turn (it may have finished already, if speculation
                # wrote it whole before the commit)
                reply = self._last_reply if self._last_reply is not reply_before else None
                self._closed_turn = ClosedTurn(item.id, event.by, reply)
            else:  # nothing may withdraw the reply: the next speech is a turn of its own
                self.turns.seal()
        transcription = self.config.transcription
        if transcription is not None:
            response = self.response.id if self.response is not None else None
            self._out.append(Transcribe(item.id, to_model_audio(event.audio), response))

    def _respond_to_turn(self, by: str, now: float) -> None:
        """A detector closed the turn (VAD silence, the end-of-turn model, or idle)."""
        detection = self.config.turn_detection
        create = detection is not None and detection.create_response
        if not create or self.response is not None:
            self._discard_speculation()
        elif self._speculation is not None and by != "idle":
            self._confirm_speculation(self._last_speech_at, now, by)
        else:
            self._discard_speculation()
            options = response_options(self.config, None, self.voices)
            speech_end_at = None if by == "idle" else self._last_speech_at
            self._start_response(options, speech_end_at, now, by)

    def _speculate(self, event: turns.Speculate) -> None:
        detection = self.config.turn_detection
        if (
            self._speculation is not None
            or self.response is not None
            or detection is None
            or not detection.create_response
        ):
            return
        turn = Turn("user", audio=to_model_audio(event.audio), item_id=event.item_id)
        options = response_options(self.config, None, self.voices)
        response = self._new_response(options)
        self._speculation = Speculation(response, [])
        request = self._request(options, [turn])
        self._out.append(
            StartResponse(response.id, request, _mode(options), None, None, speculative=True)
        )

    def _confirm_speculation(
        self, speech_end_at: float | None, committed_at: float, by: str
    ) -> None:
        speculation = self._speculation
        assert speculation is not None
        self._speculation = None
        response = speculation.response
        self._announce_response(response)
        self._out.append(ConfirmResponse(response.id, speech_end_at, committed_at, by))
        for event in speculation.held:
            if self.response is not response:
                break  # it finished among the held events
            self._apply(response, event)

    def _discard_speculation(self) -> None:
        if self._speculation is not None:
            self._out.append(CancelResponse(self._speculation.response.id, "speculation_discarded"))
            self._speculation = None

    # --- responses ---------------------------------------------------------------------

    def _start_response(
        self,
        options: ResponseOptions,
        speech_end_at: float | None,
        committed_at: float,
        detector: str = "client",
    ) -> None:
        response = self._new_response(options)
        request = self._request(options, [])
        self._announce_response(response)
        self._out.append(
            StartResponse(
                response.id,
                request,
                _mode(options),
                speech_end_at,
                committed_at,
                detector=detector,
            )
        )

    def _new_response(self, options: ResponseOptions) -> ActiveResponse:
        speak = "audio" in options.output_modalities
        encoder = OutputEncoder(options.output_format) if speak else None
        return ActiveResponse(new_id("resp"), options, encoder)

    def _request(self, options: ResponseOptions, extra_turns: list[Turn]) -> ResponseRequest:
        """What the responder is asked: the conversation (and a turn still being spoken)."""
        withdrawn = set(self._merge.withdrawn) if self._merge is not None else set()
        items = [item for item in self.items if item.id not in withdrawn]
        return ResponseRequest(
            turns=model_turns(items) + extra_turns,
            instructions=options.instructions or None,
            speak="audio" in options.output_modalities,
            voice=options.voice or None,
            speech_rate=self.config.speed,
            max_output_tokens=options.max_output_tokens,
            temperature=options.temperature,
            reasoning_effort=options.reasoning_effort,
            tools=options.prompt_tools,
            truncation=self.config.truncation,
        )

    def _announce_response(self, response: ActiveResponse) -> None:
        """The response becomes the session's; its items come as the model writes them."""
        self.response = response
        self._last_reply = response
        self.turns.response_started()
        self._emit(
            "response.created",
            response=render_response(response.id, response.options, self.beta),
        )

    def _apply(self, response: ActiveResponse, event: ResponseEvent) -> None:
        if isinstance(event, ReasoningDelta):
            response.reasoning += event.text
            if self.config.reasoning_visible:
                self._emit_part(
                    "response.reasoning_text.delta",
                    response,
                    response.message_id,
                    delta=event.text,
                )
        elif isinstance(event, AnswerDelta):
            message = self._message(response)
            message.text = (message.text or "") + event.text
            kind = "output_audio_transcript" if response.encoder else "output_text"
            self._emit_part(f"response.{kind}.delta", response, message.id, delta=event.text)
        elif isinstance(event, SpeechChunk):
            self._on_speech_chunk(response, event)
        elif isinstance(event, ToolCallDelta):
            call = self._call(response, event.index, event.name)
            call.arguments = (call.arguments or "") + event.delta
            self._emit_call(
                "response.function_call_arguments.delta", response, call, delta=event.delta
            )
        elif isinstance(event, ToolCalled):
            self._on_tool_called(response, event)
        elif isinstance(event, ResponseFinished):
            details = None
            if event.status == "incomplete":
                details = {"type": "incomplete", "reason": "max_output_tokens"}
            usage = render_usage(event.input_tokens, event.reasoning_tokens, event.answer_tokens)
            self._finish(event.status, details, usage, event.stage_seconds)

    def _message(self, response: ActiveResponse) -> Item:
        """The response's message item, begun (announced) at its first text or audio."""
        if response.message is not None:
            return response.message
        speak = response.encoder is not None
        message = Item(
            response.message_id,
            "assistant",
            "audio" if speak else "text",
            text="",
            audio=np.zeros(0, np.int16) if speak else None,
            sample_rate=TTS_SAMPLE_RATE,
            status="in_progress",
        )
        response.message = message
        self._begin_item(response, message)
        self._emit_part(
            "response.content_part.added", response, message.id, part=render_part(message)
        )
        return message

    def _call(self, response: ActiveResponse, index: int, name: str) -> Item:
        """The response's function call number `index`, begun at its first argument text."""
        call = response.calls.get(index)
        if call is None:
            call = function_call_item(new_id("item"), new_id("call"), name, "", "in_progress")
            response.calls[index] = call
            self._begin_item(response, call)
        return call

    def _begin_item(self, response: ActiveResponse, item: Item) -> None:
        previous = self.items[-1].id if self.items else None
        response.output.append(item)
        self.items.append(item)
        self._emit(
            "response.output_item.added",
            response_id=response.id,
            output_index=response.index_of(item),
            item=render_item(item, self.beta),
        )
        self._announce_item(item, previous, done=False)

    def _on_tool_called(self, response: ActiveResponse, event: ToolCalled) -> None:
        call = self._call(response, event.index, event.call.name)
        call.arguments = canonical_arguments(event.call.arguments)
        call.status = "completed"
        self._emit_call(
            "response.function_call_arguments.done",
            response,
            call,
            name=call.name,
            arguments=call.arguments,
        )
        self._end_item(response, call)

    def _end_item(self, response: ActiveResponse, item: Item) -> None:
        rendered = render_item(item, self.beta)
        self._emit(
            "response.output_item.done",
            response_id=response.id,
            output_index=response.index_of(item),
            item=rendered,
        )
        self._emit("conversation.item.done", item=rendered)

    def _on_speech_chunk(self, response: ActiveResponse, event: SpeechChunk) -> None:
        if response.encoder is None:
            return  # a text-only response has no audio to send
        message = self._message(response)
        pcm = event.chunk.pcm.astype(np.int16)
        if response.first_audio_clock_ms is None:
            response.first_audio_clock_ms = self.turns.buffer.clock_ms
        message.audio = np.concatenate([message.audio, pcm]) if message.audio is not None else pcm
        message.words.extend(event.chunk.words)
        self.stats.audio_out_ms += len(pcm) * 1000 / TTS_SAMPLE_RATE
        data = response.encoder.feed(pcm)
        if data:
            self._emit_part(
                "response.output_audio.delta",
                response,
                message.id,
                delta=base64.b64encode(data).decode(),
            )

    def _cancel(self, reason: str) -> None:
        assert self.response is not None
        self._out.append(CancelResponse(self.response.id, reason))
        shown = "turn_detected" if reason == "turn_merged" else reason  # OpenAI's two reasons
        self._finish("cancelled", {"type": "cancelled", "reason": shown}, None)

    def _finish(
        self,
        status: str,
        details: dict[str, Any] | None,
        usage: dict[str, Any] | None,
        stage_seconds: dict[str, float] | None = None,
    ) -> None:
        response = self.response
        assert response is not None
        if response.reasoning and self.config.reasoning_visible:
            self._emit_part(
                "response.reasoning_text.done",
                response,
                response.message_id,
                text=response.reasoning,
            )
        if response.message is not None:
            self._finish_message(response, response.message, status)
        for call in response.calls.values():
            if call.status == "in_progress":  # cut off before its arguments closed
                call.status = "incomplete"
                self._end_item(response, call)
        self._emit(
            "response.done",
            response=render_response(
                response.id,
                response.options,
                self.beta,
                status=status,
                status_details=details,
                output=[render_item(item, self.beta) for item in response.output],
                usage=usage,
                stage_seconds=stage_seconds,
            ),
        )
        self.response = None
        played_from = response.first_audio_clock_ms or self.turns.buffer.clock_ms
        audio_ms = response.message.audio_ms if response.message is not None else 0
        self.turns.response_done(played_from + audio_ms)

    def _finish_message(self, response: ActiveResponse, message: Item, status: str) -> None:
        message.status = "completed" if status == "completed" else "incomplete"
        if response.encoder is not None:
            tail = response.encoder.flush() if status != "cancelled" else b""
            if tail:
                self._emit_part(
                    "response.output_audio.delta",
                    response,
                    message.id,
                    delta=base64.b64encode(tail).decode(),
                )
            self._emit_part("response.output_audio.done", response, message.id)
            self._emit_part(
                "response.output_audio_transcript.done",
                response,
                message.id,
                transcript=message.text or "",
            )
        else:
            self._emit_part(
                "response.output_text.done", response, message.id, text=message.text or ""
            )
        self._emit_part(
            "response.content_part.done", response, message.id, part=render_part(message)
        )
        self._end_item(response, message)

    # --- helpers -----------------------------------------------------------------------

    def _render_session(self) -> dict[str, Any]:
        return render_session(self.id, self.config, self.beta)

    def _item(self, item_id: str) -> Item | None:
        return next((item for item in self.items if item.id == item_id), None)

    def _transcribed(self, item_id: str) -> Item | None:
        """The user item a transcript is for, unless a merge took it back (the merged turn's
        transcript will cover its words)."""
        if self._merge is not None and item_id in self._merge.withdrawn:
            return None
        return self._item(item_id)

    def _seal_turn(self) -> None:
        """The client acted on the conversation, or the reply was heard: the last closed turn
        is no longer merged."""
        self._closed_turn = None
        self.turns.seal()

    def _seal_if_heard(self, clock_ms: float) -> None:
        """Seal the closed turn once its reply could have played `MERGE_MAX_HEARD_MS` by
        `clock_ms` (the end of the audio about to be classified), before any speech in it can
        start a merge."""
        closed = self._closed_turn
        reply = closed.reply if closed is not None else None
        started = reply.first_audio_clock_ms if reply is not None else None
        if started is not None and clock_ms - started > MERGE_MAX_HEARD_MS:
            self._seal_turn()

    def _index_of(self, item_id: str, param: str, code: ErrorCode) -> int:
        for index, item in enumerate(self.items):
            if item.id == item_id:
                return index
        raise ProtocolError(code, f"no item with id {item_id!r} in the conversation", param)

    def _check_room(self) -> None:
        if len(self.items) >= self.limits.max_items:
            raise self._full_error()

    def _full_error(self) -> ProtocolError:
        return ProtocolError(
            ErrorCode.CONVERSATION_FULL,
            f"the conversation holds {len(self.items)} items, the limit of this session; "
            "delete old items (conversation.item.delete) to add more",
        )

    def _announce_item(self, item: Item, previous: str | None, done: bool = True) -> None:
        rendered = render_item(item, self.beta)
        self._emit("conversation.item.added", item=rendered, previous_item_id=previous)
        if done:
            self._emit("conversation.item.done", item=rendered, previous_item_id=previous)

    def _emit_part(self, type_: str, response: ActiveResponse, item_id: str, **fields: Any) -> None:
        message = response.message
        index = response.index_of(message) if message is not None else len(response.output)
        self._emit(
            type_,
            response_id=response.id,
            item_id=item_id,
            output_index=index,
            content_index=0,
            **fields,
        )

    def _emit_call(self, type_: str, response: ActiveResponse, call: Item, **fields: Any) -> None:
        self._emit(
            type_,
            response_id=response.id,
            item_id=call.id,
            output_index=response.index_of(call),
            call_id=call.call_id,
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
    return options.reasoning_effort
