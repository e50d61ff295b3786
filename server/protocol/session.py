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
- The session holds one response, whose lifecycle is a table (response.py); the conversation
  store (conversation.py), what a response writes (response.py, speech_out.py), user
  transcripts (transcripts.py) and the outputs' naming (outputs.py) are pieces of their own.
  Client events, turn events and responder events are dispatched by tables.
- Speculation (docs/ARCHITECTURE.md): a pause starts the response on the audio so far, before
  the turn closes. Its events are held back; when the turn commits they go out
  (`ConfirmResponse`) and the response goes on live; if speech resumes, or the client changes
  anything, it is thrown away (`CancelResponse` with reason `speculation_discarded`) and the
  client never hears of it.
- Reasoning goes only to clients that ask for it (`include: ["response.reasoning_text"]`);
  user transcripts only where `audio.input.transcription` is set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from server.protocol import models as m
from server.protocol.actions import (
    CancelResponse,
    Close,
    ConfirmResponse,
    JudgeTurnEnd,
    Output,
    PrepareResponse,
    StartResponse,
    Transcribe,
    TurnsMerged,
)
from server.protocol.audio import InputDecoder, to_model_audio
from server.protocol.config import (
    ResponseOptions,
    SessionConfig,
    SessionLimits,
    apply_update,
    response_options,
)
from server.protocol.conversation import Conversation
from server.protocol.errors import (
    NO_ACTIVE_RESPONSE_MESSAGE,
    ErrorCode,
    ProtocolError,
    error_event,
)
from server.protocol.items import (
    Item,
    check_item_size,
    item_from_client,
    model_turns,
    new_id,
    truncate,
)
from server.protocol.outputs import Outputs
from server.protocol.parse import b64decode, parse_json, sniff_event_id, validate
from server.protocol.render import render_item, render_response, render_session
from server.protocol.response import ActiveResponse, Move, ResponseSlot, ResponseWriter
from server.protocol.stats import SessionStats
from server.protocol.transcripts import Transcripts
from streaming.responder import ResponseEvent, ResponseFinished, ResponseRequest, Turn
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
        self.closed = False
        self.stats = SessionStats()
        self.conversation = Conversation(self.limits.max_items)
        self.slot = ResponseSlot()
        self._outputs = Outputs(beta)
        self._writer = ResponseWriter(
            self._outputs,
            self.conversation,
            self.stats,
            clock_ms=lambda: self.turns.buffer.clock_ms,
            show_reasoning=lambda: self.config.reasoning_visible,
        )
        self._transcripts = Transcripts(self._outputs, self.conversation, self._withdrawn)
        self._decoder = InputDecoder(config.input_format)
        self.turns = turns.TurnTaking(
            config.turn_detection,
            lambda: new_id("item"),
            vad=vad,
            speculate_after_ms=speculate_after_ms,
            prepare_every_ms=prepare_every_ms,
        )
        self._last_speech_at: float | None = None
        self._closed_turn: ClosedTurn | None = None
        self._last_reply: ActiveResponse | None = None  # the latest response announced
        self._merge: Merge | None = None
        self._on_client: dict[str, Callable[[Any, float], None]] = {
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
        assert set(self._on_client) == set(m.CLIENT_EVENTS)
        self._on_turn: dict[type, Callable[[Any, float], None]] = {
            turns.SpeechStarted: self._on_speech_started,
            turns.SpeechStopped: self._on_speech_stopped,
            turns.TurnCommitted: self._on_turn_committed,
            turns.Speculate: self._on_speculate,
            turns.Resumed: self._on_resumed,
            turns.Prepare: self._on_prepare,
            turns.AskEndOfTurn: self._on_ask_end_of_turn,
            turns.IdleTimeout: self._on_idle_timeout,
        }

    @property
    def items(self) -> list[Item]:
        return self.conversation.items

    @property
    def response(self) -> ActiveResponse | None:
        """The response the client was told of, until its `response.done`."""
        return self.slot.active

    # --- public API --------------------------------------------------------------------

    def start(self) -> list[Output]:
        self._outputs.emit("session.created", session=self._render_session())
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
            self._on_client[type_](event, now)
            if type_ in CHANGES_CONTEXT:
                self._discard_speculation()  # the client changed what the guess was based on
                self._seal_turn()  # and what a merge would undo
        except ProtocolError as error:
            self._outputs.error(error, event_id)
        return self._drain()

    def on_response_event(self, response_id: str, event: ResponseEvent) -> list[Output]:
        """One event from the responder of `response_id`; stale ones are ignored."""
        speculative = self.slot.speculative
        if speculative is not None and speculative.id == response_id:
            self.slot.held.append(event)
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
        speculative = self.slot.speculative
        response = self.response
        if speculative is not None and speculative.id == response_id:
            self.slot.move(Move.DISCARD)  # nobody saw it; the turn starts afresh on commit
        elif response is not None and response.id == response_id:
            message = message or f"response {response_id} failed inside the server; it is logged"
            event = error_event(new_id("event"), code, message)
            self._end(response, "failed", {"type": "failed", "error": event["error"]}, None)
            self._outputs.event(event)
        return self._drain()

    def on_turn_verdict(self, request_id: int, probability: float, now: float) -> list[Output]:
        """The end-of-turn model's answer to `JudgeTurnEnd(request_id)`."""
        if not self.closed:
            self._turn_events(self.turns.verdict(request_id, probability), now)
        return self._drain()

    def on_transcript_delta(self, item_id: str, text: str) -> list[Output]:
        self._transcripts.delta(item_id, text)
        return self._drain()

    def on_transcript_done(
        self, item_id: str, transcript: str, usage: dict[str, Any]
    ) -> list[Output]:
        self._transcripts.done(item_id, transcript, usage)
        return self._drain()

    def on_transcript_failed(self, item_id: str, message: str) -> list[Output]:
        self._transcripts.failed(item_id, message)
        return self._drain()

    def close(self, code: ErrorCode, message: str, ws_code: int = 1000) -> list[Output]:
        """End the session (expiry, idle, shutdown): cancel, tell the client, then close."""
        if not self.closed:
            self._discard_speculation()
            if self.response is not None:
                self._cancel("client_cancelled")
            self._outputs.error(ProtocolError(code, message))
            self._outputs.act(Close(ws_code, message))
            self.closed = True
        return self._drain()

    # --- client events -----------------------------------------------------------------

    def _on_session_update(self, event: m.SessionUpdate, now: float) -> None:
        config, errors = apply_update(self.config, event.session, self.voices, self.limits.config)
        for error in errors:
            self._outputs.error(error, event.event_id)
        if config.input_format != self.config.input_format:
            self._decoder = InputDecoder(config.input_format)
        detection_changed = config.turn_detection != self.config.turn_detection
        self.config = config
        if detection_changed:
            self.turns.configure(config.turn_detection)
            self._merge = None  # the turn in progress starts afresh, without the earlier one
        self._outputs.emit("session.updated", session=self._render_session())

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
        self.conversation.check_room()
        self._turn_events(self.turns.commit(), now)

    def _on_input_audio_buffer_clear(self, event: m.InputAudioBufferClear, now: float) -> None:
        self._turn_events(self.turns.clear(), now)
        self._merge = None  # the merged turn will not commit: the earlier one stands
        self._outputs.emit("input_audio_buffer.cleared")

    def _on_conversation_item_create(self, event: m.ConversationItemCreate, now: float) -> None:
        self.conversation.check_room()
        item = item_from_client(event.item, self.config.input_format, self.items)
        check_item_size(item, self.limits.max_item_chars, self.limits.max_input_buffer_ms)
        previous = self.conversation.insert(item, event.previous_item_id)
        self._outputs.announce_item(item, previous)

    def _on_conversation_item_retrieve(self, event: m.ConversationItemRetrieve, now: float) -> None:
        code = ErrorCode.ITEM_RETRIEVE_INVALID_ITEM_ID
        item = self.items[self.conversation.index_of(event.item_id, "item_id", code)]
        fmt = self.config.output_format if item.role == "assistant" else self.config.input_format
        self._outputs.emit("conversation.item.retrieved", item=render_item(item, self.beta, fmt))

    def _on_conversation_item_delete(self, event: m.ConversationItemDelete, now: float) -> None:
        self.conversation.index_of(event.item_id, "item_id", ErrorCode.ITEM_DELETE_INVALID_ITEM_ID)
        response = self.response
        if response is not None and any(item.id == event.item_id for item in response.output):
            raise ProtocolError(
                ErrorCode.ITEM_IN_PROGRESS,
                f"item {event.item_id} is being written by response {response.id}; "
                "cancel the response first",
                "item_id",
            )
        self.conversation.remove(event.item_id)
        self._outputs.emit("conversation.item.deleted", item_id=event.item_id)

    def _on_conversation_item_truncate(self, event: m.ConversationItemTruncate, now: float) -> None:
        code = ErrorCode.ITEM_TRUNCATE_INVALID_ITEM_ID
        item = self.items[self.conversation.index_of(event.item_id, "item_id", code)]
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
        self._outputs.emit(
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
        self._discard_speculation()  # the client's own request replaces the guess
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
        self._outputs.emit("output_audio_buffer.cleared", response_id=last.id if last else "")

    # --- turn-taking -------------------------------------------------------------------

    def _turn_events(self, events: list[turns.TurnEvent], now: float) -> None:
        for event in events:
            self._on_turn[type(event)](event, now)

    def _on_speech_started(self, event: turns.SpeechStarted, now: float) -> None:
        self._outputs.emit(
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

    def _on_speech_stopped(self, event: turns.SpeechStopped, now: float) -> None:
        self._outputs.emit(
            "input_audio_buffer.speech_stopped",
            audio_end_ms=event.audio_end_ms,
            item_id=event.item_id,
        )

    def _on_resumed(self, event: turns.Resumed, now: float) -> None:
        self._discard_speculation()

    def _on_prepare(self, event: turns.Prepare, now: float) -> None:
        options = response_options(self.config, None, self.voices)
        turn = Turn("user", audio=to_model_audio(event.audio), item_id=event.item_id)
        self._outputs.act(PrepareResponse(self._request(options, [turn])))

    def _on_ask_end_of_turn(self, event: turns.AskEndOfTurn, now: float) -> None:
        self._outputs.act(JudgeTurnEnd(event.request_id, event.audio))

    def _on_idle_timeout(self, event: turns.IdleTimeout, now: float) -> None:
        self._outputs.emit(
            "input_audio_buffer.timeout_triggered",
            audio_start_ms=event.audio_start_ms,
            audio_end_ms=event.audio_end_ms,
            item_id=event.item_id,
        )

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
        self._outputs.act(TurnsMerged(closed.detector, heard_ms))

    def _on_turn_committed(self, event: turns.TurnCommitted, now: float) -> None:
        merge, self._merge = self._merge, None
        if merge is not None and merge.item_id == event.item_id:
            for item_id in merge.withdrawn:
                if self.conversation.remove(item_id):
                    self._outputs.emit("conversation.item.deleted", item_id=item_id)
        if self.conversation.full:
            self._discard_speculation()
            self._outputs.error(self.conversation.full_error())
            return
        item = Item(event.item_id, "user", "audio", audio=event.audio)
        previous = self.conversation.append(item)
        self._outputs.emit(
            "input_audio_buffer.committed", item_id=item.id, previous_item_id=previous
        )
        self._outputs.announce_item(item, previous)
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
            self._outputs.act(Transcribe(item.id, to_model_audio(event.audio), response))

    def _respond_to_turn(self, by: str, now: float) -> None:
        """A detector closed the turn (VAD silence, the end-of-turn model, or idle)."""
        detection = self.config.turn_detection
        create = detection is not None and detection.create_response
        if not create or self.response is not None:
            self._discard_speculation()
        elif self.slot.speculative is not None and by != "idle":
            self._confirm_speculation(self._last_speech_at, now, by)
        else:
            self._discard_speculation()
            options = response_options(self.config, None, self.voices)
            speech_end_at = None if by == "idle" else self._last_speech_at
            self._start_response(options, speech_end_at, now, by)

    def _on_speculate(self, event: turns.Speculate, now: float) -> None:
        detection = self.config.turn_detection
        if self.slot.response is not None or detection is None or not detection.create_response:
            return
        turn = Turn("user", audio=to_model_audio(event.audio), item_id=event.item_id)
        options = response_options(self.config, None, self.voices)
        response = ActiveResponse.new(options)
        self.slot.move(Move.SPECULATE, response)
        request = self._request(options, [turn])
        self._outputs.act(
            StartResponse(response.id, request, _mode(options), None, None, speculative=True)
        )

    def _confirm_speculation(
        self, speech_end_at: float | None, committed_at: float, by: str
    ) -> None:
        response = self.slot.speculative
        assert response is not None
        held = self.slot.move(Move.CONFIRM)
        self._announce_response(response)
        self._outputs.act(ConfirmResponse(response.id, speech_end_at, committed_at, by))
        for event in held:
            if self.response is not response:
                break  # it finished among the held events
            self._apply(response, event)

    def _discard_speculation(self) -> None:
        speculative = self.slot.speculative
        if speculative is not None:
            self.slot.move(Move.DISCARD)
            self._outputs.act(CancelResponse(speculative.id, "speculation_discarded"))

    # --- responses ---------------------------------------------------------------------

    def _start_response(
        self,
        options: ResponseOptions,
        speech_end_at: float | None,
        committed_at: float,
        detector: str = "client",
    ) -> None:
        response = ActiveResponse.new(options)
        request = self._request(options, [])
        self.slot.move(Move.START, response)
        self._announce_response(response)
        self._outputs.act(
            StartResponse(
                response.id,
                request,
                _mode(options),
                speech_end_at,
                committed_at,
                detector=detector,
            )
        )

    def _request(self, options: ResponseOptions, extra_turns: list[Turn]) -> ResponseRequest:
        """What the responder is asked: the conversation (and a turn still being spoken)."""
        return ResponseRequest(
            turns=model_turns(self.conversation.without(self._withdrawn())) + extra_turns,
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
        """The response becomes the client's; its items come as the model writes them."""
        self._last_reply = response
        self.turns.response_started()
        self._outputs.emit(
            "response.created",
            response=render_response(response.id, response.options, self.beta),
        )

    def _apply(self, response: ActiveResponse, event: ResponseEvent) -> None:
        if isinstance(event, ResponseFinished):
            self._writer.finished(response, event)
            self._ended(response)
        else:
            self._writer.apply(response, event)

    def _cancel(self, reason: str) -> None:
        response = self.response
        assert response is not None
        self._outputs.act(CancelResponse(response.id, reason))
        shown = "turn_detected" if reason == "turn_merged" else reason  # OpenAI's two reasons
        self._end(response, "cancelled", {"type": "cancelled", "reason": shown}, None)

    def _end(
        self,
        response: ActiveResponse,
        status: str,
        details: dict[str, Any] | None,
        usage: dict[str, Any] | None,
    ) -> None:
        self._writer.finish(response, status, details, usage)
        self._ended(response)

    def _ended(self, response: ActiveResponse) -> None:
        """After its `response.done`: the slot is free, and turn-taking knows until when the
        reply plays."""
        self.slot.move(Move.END)
        played_from = response.first_audio_clock_ms or self.turns.buffer.clock_ms
        audio_ms = response.message.audio_ms if response.message is not None else 0
        self.turns.response_done(played_from + audio_ms)

    # --- helpers -----------------------------------------------------------------------

    def _render_session(self) -> dict[str, Any]:
        return render_session(self.id, self.config, self.beta)

    def _withdrawn(self) -> list[str]:
        """Items a merge took back: still in the conversation until the merged turn commits,
        but no request sees them and no transcript is told of them."""
        return self._merge.withdrawn if self._merge is not None else []

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

    def _drain(self) -> list[Output]:
        return self._outputs.drain()


def _mode(options: ResponseOptions) -> str:
    """The `mode` label of the latency metrics."""
    return options.reasoning_effort
