"""GPT-Live, OpenAI's successor of the Realtime API, as a sans-I/O machine: a translator that owns
a Realtime `Session` and speaks GPT-Live to the client (docs/live.md has the whole mapping).

GPT-Live is a full-duplex voice front: the server owns turn-taking and interruption (no VAD
settings, no `response.create` for speech, no truncate), transcripts come with times on the
session timeline, and work the voice cannot do is delegated, to the application (`client`
delegation) or to a Responses backend (`responses` delegation). Here the voice and the backend
are one model, R1, which thinks while it speaks:
- the session's turn-taking, merging, speculation, responses, transcripts and limits are the
  Realtime machine's, unchanged: each GPT-Live client event becomes Realtime client events for
  the inner `Session`, and each of its outputs becomes GPT-Live events (or nothing) and the same
  actions, so that the connection runs it with the same responder, turn work and metrics;
- `responses` delegation is served by R1's own reasoning and tool calls: a response that calls
  a declared function (or reasons, where the client asked for reasoning) creates a delegation,
  and its work goes out as a Responses stream wrapped in `response.event`; the client's
  `function_call_output` items and `response.create` continue it;
- `client` delegation: R1 is shown one tool, `delegate`; calling it creates the delegation, and
  the application's `session.commentary.append` for it is its result, which R1 then says in its
  own words (`session.thinking.append` gives it silently).

The session timeline is the input audio clock (milliseconds of audio appended): transcripts,
appended context and delegations are placed on it. Output transcripts follow the spoken words
(the TTS word timings), so a reply cut by a barge-in shows only what went out. The connection
paces output audio to real time, `AUDIO_LEAD_MS` ahead of playback (GPT-Live clients play what
they receive: there is no clear), so that an interruption stops the voice; the reply kept in
the conversation is cut to what the listener could have heard.

Bad input never raises and never changes state: one `error` event (GPT-Live's shape: the
client's id as `client_event_id`), and the session goes on.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any

import numpy as np
from pydantic import BaseModel

from server.protocol import live_models as lm
from server.protocol.actions import CancelResponse, Close, Output
from server.protocol.audio import AudioFormat, encode_samples
from server.protocol.config import SessionConfig, apply_update, check_voice
from server.protocol.errors import ErrorCode, ProtocolError, error_object
from server.protocol.items import Item, new_id
from server.protocol.live_backend import (
    Backend,
    Delegation,
    function_call,
    reasoning_item,
    responses_usage,
)
from server.protocol.live_settings import (
    DELEGATE_TOOL_NAME,
    Delegating,
    decisions_error,
    delegating_of,
    initial_item,
    inner_update,
    live_format,
    render_format,
    text_of,
)
from server.protocol.machine import MachineOutput, Rendered
from server.protocol.parse import b64decode, parse_json, sniff_event_id
from server.protocol.session import Limits, Session
from server.protocol.stats import SessionStats
from streaming.responder import ResponseEvent
from streaming.turns.machine import PREPARE_EVERY_MS, TurnState, TurnTaking

# The connection sends output audio at most this far ahead of its playback (server/connection.py)
# and a reply cut by a barge-in keeps what played before it plus this much.
AUDIO_LEAD_MS = 500
# How appended context reaches R1 (a system turn in the conversation), where no delegation's
# call is there to take it as its output.
THINKING_NOTE = "Context for you, not to be read out unless it becomes relevant: {}"
COMMENTARY_NOTE = "Tell the user this now, in your own words: {}"
MAX_DELEGATIONS = 256  # remembered per session; older ones can no longer be answered
MAX_TURN_SPANS = 64  # user turns whose span on the timeline is kept for their transcript
CLOSE_REASONS = {  # why the server closed -> session.closed's reason
    ErrorCode.SESSION_EXPIRED: "expired",
    ErrorCode.SESSION_IDLE_TIMEOUT: "expired",
}


class LiveErrorCode(StrEnum):
    """Codes of GPT-Live's own conditions (the shared ones are `ErrorCode`'s)."""

    SESSION_NOT_STARTED = "session_not_started"
    SESSION_ALREADY_STARTED = "session_already_started"
    UNKNOWN_DELEGATION_ID = "unknown_delegation_id"
    DELEGATION_MISMATCH = "delegation_mismatch"  # the event needs the other delegation type
    FUNCTION_CALL_OUTPUTS_REQUIRED = "function_call_outputs_required"


class LiveError(Exception):
    """Bad client input of GPT-Live's own kind; becomes an `error` event, as ProtocolError."""

    def __init__(self, code: LiveErrorCode, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


class Phase(Enum):
    WAITING = "waiting"  # for session.start
    STARTED = "started"
    CLOSED = "closed"


@dataclass
class Voice:
    """A reply's spoken answer on the session timeline."""

    item: Item  # the inner session's message item: its audio, text and word timings
    start_ms: float | None = None  # where its first audio lies on the timeline
    said: int = 0  # characters of its text given as output transcript


@dataclass
class Reply:
    """An inner response from `response.created` to `response.done`."""

    id: str
    voice: Voice | None = None
    backend: Backend | None = None


class LiveSession:
    """One GPT-Live session. The connection drives it as it drives a `Session`
    (server/protocol/machine.py); its outputs are GPT-Live events, `Rendered` events and the
    inner session's actions."""

    def __init__(
        self,
        config: SessionConfig,
        voices: list[str],
        *,
        limits: Limits | None = None,
        session_id: str | None = None,
        speculate_after_ms: int | None = None,
        prepare_every_ms: int | None = PREPARE_EVERY_MS,
        vad: str = "webrtc",
        started_at: float = 0.0,
        expires_at: int = 0,
        audio_lead_ms: int = AUDIO_LEAD_MS,
    ) -> None:
        self._session = Session(
            config,
            voices,
            limits=limits,
            session_id=session_id or new_id("sess"),
            speculate_after_ms=speculate_after_ms,
            prepare_every_ms=prepare_every_ms,
            vad=vad,
        )
        self._voices = voices
        self._limits = limits or Limits()
        self._started_at = started_at  # Unix time of the session's start (the timeline's 0)
        self._expires_at = expires_at
        self._audio_lead_ms = audio_lead_ms
        self._default_instructions = config.instructions
        self._phase = Phase.WAITING
        self._now = 0.0
        self._out: list[MachineOutput] = []
        # what session.start fixed
        self._model = config.model
        self._instructions = config.instructions  # the front's (the voice's)
        self._input: list[dict[str, Any]] = []
        self._safety_identifier: str | None = None
        self._delegating = Delegating()
        self._muted = False
        # state
        self._replies: dict[str, Reply] = {}
        self._delegations: dict[str, Delegation] = {}
        self._calls: dict[str, Delegation] = {}  # call_id -> its delegation
        self._continues: Delegation | None = None  # the next response goes on with it
        self._awaiting: Delegation | None = None  # its calls await outputs to go on
        self._want_response = False  # a response is to start once the floor is free
        self._spans: dict[str, list[float]] = {}  # user turn item id -> [start_ms, end_ms]
        self._transcribed: set[str] = set()  # user turns whose transcript began
        self._merged: set[str] = set()  # replies a merge withdrew, until their response.done
        self._handlers: dict[str, Callable[[Any], None]] = {
            "session.start": self._on_start,
            "session.update": self._on_update,
            "session.input_audio.append": self._on_append,
            "session.input_audio.mute": self._on_mute,
            "session.input_audio.unmute": self._on_unmute,
            "session.instructions.append": self._on_context,
            "session.thinking.append": self._on_context,
            "session.commentary.append": self._on_context,
            "response.item.create": self._on_response_item,
            "response.create": self._on_response_create,
            "session.close": self._on_close,
            "session.output_audio.fixture.play": self._on_unsupported,
            "decision.create": self._on_unsupported,
            "decision.item.create": self._on_unsupported,
            "decision.item.delete": self._on_unsupported,
        }
        assert set(self._handlers) == set(lm.LIVE_CLIENT_EVENTS)
        self._translators: dict[str, Callable[[dict[str, Any]], bool]] = {
            "error": self._t_error,
            "input_audio_buffer.speech_started": self._t_speech_started,
            "input_audio_buffer.speech_stopped": self._t_speech_stopped,
            "input_audio_buffer.committed": self._t_committed,
            "response.created": self._t_response_created,
            "response.output_item.added": self._t_item_added,
            "response.output_item.done": self._t_item_done,
            "response.output_audio.delta": self._t_audio,
            "response.reasoning_text.delta": self._t_reasoning,
            "response.function_call_arguments.delta": self._t_call_delta,
            "response.function_call_arguments.done": self._t_call_done,
            "response.done": self._t_response_done,
            "conversation.item.input_audio_transcription.delta": self._t_transcript_delta,
            "conversation.item.input_audio_transcription.completed": self._t_transcript_done,
            "conversation.item.input_audio_transcription.failed": self._t_transcript_failed,
        }

    # --- what the connection reads -----------------------------------------------------

    @property
    def id(self) -> str:
        return self._session.id

    @property
    def config(self) -> SessionConfig:
        return self._session.config

    @property
    def turns(self) -> TurnTaking:
        return self._session.turns

    @property
    def stats(self) -> SessionStats:
        return self._session.stats

    @property
    def started(self) -> bool:
        return self._phase is Phase.STARTED

    # --- public API (as `Session`'s) ---------------------------------------------------

    def start(self) -> list[MachineOutput]:
        return []  # the client speaks first: session.start

    def receive(self, message: str | bytes, now: float) -> list[MachineOutput]:
        self._now = now
        event_id: str | None = None
        try:
            if self._phase is Phase.CLOSED:
                event_id = sniff_event_id(message)
                raise ProtocolError(ErrorCode.SESSION_CLOSED, "the session is closed")
            if len(message) > self._limits.max_message_bytes:
                event_id = sniff_event_id(message)
                raise ProtocolError(
                    ErrorCode.MESSAGE_TOO_LARGE,
                    f"message of {len(message)} bytes is over the limit of "
                    f"{self._limits.max_message_bytes}; split audio into smaller appends",
                )
            data = parse_json(message)
            event_id = data.get("event_id") if isinstance(data.get("event_id"), str) else None
            event = lm.validate_live(data)
            type_: str = event.type  # type: ignore[attr-defined]
            if type_ != "session.start" and self._phase is Phase.WAITING:
                raise LiveError(
                    LiveErrorCode.SESSION_NOT_STARTED,
                    f"{type_} before session.start: send session.start first and wait for "
                    "session.started",
                )
            self._handlers[type_](event)
        except (ProtocolError, LiveError) as error:
            self._error(error.code, error.message, event_id, error.param)
        return self._settle()

    def on_response_event(self, response_id: str, event: ResponseEvent) -> list[MachineOutput]:
        self._take(self._session.on_response_event(response_id, event))
        return self._settle()

    def on_response_failed(
        self,
        response_id: str,
        code: ErrorCode = ErrorCode.SERVER_ERROR,
        message: str | None = None,
    ) -> list[MachineOutput]:
        self._take(self._session.on_response_failed(response_id, code, message))
        return self._settle()

    def on_turn_verdict(
        self, request_id: int, probability: float, now: float
    ) -> list[MachineOutput]:
        self._now = now
        self._take(self._session.on_turn_verdict(request_id, probability, now))
        return self._settle()

    def on_transcript_delta(self, item_id: str, text: str) -> list[MachineOutput]:
        self._take(self._session.on_transcript_delta(item_id, text))
        return self._settle()

    def on_transcript_done(
        self, item_id: str, transcript: str, usage: dict[str, Any]
    ) -> list[MachineOutput]:
        self._take(self._session.on_transcript_done(item_id, transcript, usage))
        return self._settle()

    def on_transcript_failed(self, item_id: str, message: str) -> list[MachineOutput]:
        self._take(self._session.on_transcript_failed(item_id, message))
        return self._settle()

    def close(self, code: ErrorCode, message: str, ws_code: int = 1000) -> list[MachineOutput]:
        """The server ends the session (expiry, idle, shutdown, refusal): the `error` saying
        why, `session.closed` (once started), then the close."""
        if self._phase is Phase.STARTED:
            self._end(CLOSE_REASONS.get(code, "connection_lost"), ws_code, message, code)
        elif self._phase is Phase.WAITING:
            self._phase = Phase.CLOSED
            self._error(code, message, None, None)
            self._out.append(Close(ws_code, message))
        return self._drain()

    # --- client events -----------------------------------------------------------------

    def _on_start(self, event: lm.SessionStart) -> None:
        if self._phase is Phase.STARTED:
            raise LiveError(
                LiveErrorCode.SESSION_ALREADY_STARTED,
                "this session has started; session.start comes once. session.update changes "
                "its delegation settings",
            )
        given = event.session
        if given.store:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED_FEATURE,
                "this server keeps no sessions (no recording to download, nothing to fork): "
                "start with store false or left out",
                "session.store",
            )
        if given.triggers:
            raise decisions_error("session.triggers")
        if given.client is not None:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED_FEATURE,
                "session.client configures a WebRTC front end; this is a WebSocket session",
                "session.client",
            )
        delegating = delegating_of(given.delegation, None)
        fmt = live_format(given.audio.format if given.audio else None)
        voice = self._voice(
            given.audio.output.voice if given.audio and given.audio.output else None
        )
        front = given.instructions if given.instructions and given.instructions.strip() else None
        front = front if front is not None else self._default_instructions
        items = [initial_item(item) for item in given.input or []]
        if len(items) > self._limits.max_items:
            raise ProtocolError(
                ErrorCode.INVALID_VALUE,
                f"{len(items)} input messages are over this session's limit of "
                f"{self._limits.max_items}",
                "session.input",
            )
        for index, item in enumerate(items):
            text = item["content"][0]["text"]
            if len(text) > self._limits.max_item_chars:
                raise ProtocolError(
                    ErrorCode.INVALID_VALUE,
                    f"input message {index} holds {len(text)} characters, over the limit of "
                    f"{self._limits.max_item_chars}",
                    f"session.input.{index}.content.0.text",
                )
        update = inner_update(delegating, front)
        audio = {"format": fmt}
        update["audio"] = {
            "input": {
                **audio,
                "transcription": {"model": given.model},
                "turn_detection": self._turn_detection(),
            },
            "output": {**audio, **({"voice": voice} if voice is not None else {})},
        }
        update["output_modalities"] = ["audio"]
        self._check(update)
        self._inner({"type": "session.update", "event_id": event.event_id, "session": update})
        for item in items:
            self._inner(
                {"type": "conversation.item.create", "event_id": event.event_id, "item": item}
            )
        self._phase = Phase.STARTED
        self._model = given.model
        self._instructions = front
        self._input = [item.model_dump(exclude_none=True) for item in given.input or []]
        self._safety_identifier = given.safety_identifier
        self._delegating = delegating
        self._emit("session.started", client_event_id=event.event_id, session=self._resource())

    def _on_update(self, event: lm.SessionUpdate) -> None:
        given = event.session
        if given.triggers:
            raise decisions_error("session.triggers")
        if given.delegation is not None:
            delegating = delegating_of(given.delegation, self._delegating)
            update = inner_update(delegating, self._instructions)
            self._check(update)
            self._inner({"type": "session.update", "event_id": event.event_id, "session": update})
            self._delegating = delegating
        self._emit("session.updated", client_event_id=event.event_id, session=self._resource())

    def _on_append(self, event: lm.InputAudioAppend) -> None:
        audio = event.audio
        if self._muted:  # a muted microphone: the model hears silence, the timeline goes on
            raw = b64decode(audio, "audio")
            audio = base64.b64encode(_silence(self.config.input_format, len(raw))).decode()
        self._inner(
            {"type": "input_audio_buffer.append", "event_id": event.event_id, "audio": audio}
        )

    def _on_mute(self, event: lm.InputAudioMute) -> None:
        self._muted = True
        self._emit("session.input_audio.muted", client_event_id=event.event_id)

    def _on_unmute(self, event: lm.InputAudioUnmute) -> None:
        self._muted = False
        self._emit("session.input_audio.unmuted", client_event_id=event.event_id)

    def _on_context(self, event: lm.ContextAppend) -> None:
        """instructions (a system turn), thinking (silent), commentary (to be said): with a
        client delegation's id, thinking and commentary are that delegation's result."""
        kind = event.type.split(".")[1]  # type: ignore[attr-defined]
        content = event.content
        if not content.strip():
            raise ProtocolError(ErrorCode.INVALID_VALUE, "content must not be empty", "content")
        if len(content) > lm.MAX_APPEND_CHARS:
            raise ProtocolError(
                ErrorCode.INVALID_VALUE,
                f"content of {len(content)} characters is over the limit of "
                f"{lm.MAX_APPEND_CHARS}; send it in several appends",
                "content",
            )
        delegation = self._client_delegation(event.delegation_id)
        at = self._clock_ms()
        if kind == "instructions":
            added = self._add_message("system", content, event.event_id)
        elif delegation is not None:
            added = self._add_output(delegation, content, event.event_id)
        else:
            note = THINKING_NOTE if kind == "thinking" else COMMENTARY_NOTE
            added = self._add_message("system", note.format(content), event.event_id)
        if not added:
            return  # the inner session's error went out
        if kind == "commentary":
            self._want_response = True
        self._emit(
            f"session.{kind}.appended", client_event_id=event.event_id, start_ms=at, end_ms=at
        )

    def _on_response_item(self, event: lm.ResponseItemCreate) -> None:
        self._need_responses("response.item.create")
        item = event.item
        kind = item.get("type", "message")
        if kind == "function_call_output":
            given = lm.validated(lm.FunctionCallOutputIn, item, "response.item.create", "item")
            delegation = self._calls.get(given.call_id)
            if delegation is None or delegation.calls.get(given.call_id) is not False:
                raise ProtocolError(
                    ErrorCode.UNKNOWN_CALL_ID,
                    f"no function call {given.call_id!r} awaits an output in this session; "
                    "send the call_id of a function_call item the backend completed",
                    "item.call_id",
                )
            output = given.output if isinstance(given.output, str) else text_of(given.output)
            if self._add_output(delegation, output, event.event_id, given.call_id):
                self._continues = delegation
        elif kind == "message":
            message = lm.validated(lm.MessageItemIn, item, "response.item.create", "item")
            text = message.content if isinstance(message.content, str) else text_of(message.content)
            role = "system" if message.role in ("system", "developer") else message.role
            self._add_message(role, text, event.event_id)
        else:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED_FEATURE,
                f"input items of type {kind!r} are not served here; send function_call_output "
                "or message items",
                "item.type",
            )

    def _on_response_create(self, event: lm.ResponseCreate) -> None:
        self._need_responses("response.create")
        awaiting = self._awaiting
        if awaiting is not None:
            missing = sorted(call for call, answered in awaiting.calls.items() if not answered)
            if missing:
                raise LiveError(
                    LiveErrorCode.FUNCTION_CALL_OUTPUTS_REQUIRED,
                    f"delegation {awaiting.id} waits for the outputs of {missing}; send each as "
                    "a function_call_output item (response.item.create) first",
                )
        self._want_response = True  # now, or once the voice has the floor

    def _on_close(self, event: lm.SessionClose) -> None:
        self._end("close_requested", 1000, "closed by the client", None, event.event_id)

    def _on_unsupported(self, event: BaseModel) -> None:
        type_ = event.type  # type: ignore[attr-defined]
        if type_.startswith("decision."):
            raise decisions_error("type")
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_FEATURE,
            "audio fixtures are not served here; the voice is the model's own",
            "type",
        )

    # --- session.start and session.update ----------------------------------------------

    def _check(self, update: dict[str, Any]) -> None:
        """Refuse the whole event where the inner session would refuse any of `update`."""
        _, errors = apply_update(self.config, update, self._voices, self._limits.config)
        if errors:
            raise errors[0]

    def _voice(self, given: str | lm.CustomVoiceIn | None) -> str | None:
        if given is None:
            return None
        voice = given.id if isinstance(given, lm.CustomVoiceIn) else given
        return check_voice(voice, self._voices, "session.audio.output.voice")

    def _turn_detection(self) -> dict[str, Any]:
        """The server's turn detection, always creating and interrupting responses: GPT-Live's
        turn-taking is the server's."""
        detection = self.config.turn_detection
        kind = detection.type if detection is not None else "server_vad"
        return {"type": kind, "create_response": True, "interrupt_response": True}

    # --- conversation ------------------------------------------------------------------

    def _add_message(self, role: str, text: str, event_id: str | None) -> bool:
        kind = "output_text" if role == "assistant" else "input_text"
        item = {"type": "message", "role": role, "content": [{"type": kind, "text": text}]}
        return self._inner({"type": "conversation.item.create", "event_id": event_id, "item": item})

    def _add_output(
        self, delegation: Delegation, output: str, event_id: str | None, call_id: str | None = None
    ) -> bool:
        """A result for `delegation`: the output of `call_id` (default: its first call)."""
        call_id = call_id if call_id is not None else next(iter(delegation.calls))
        item = {"type": "function_call_output", "call_id": call_id, "output": output}
        added = self._inner(
            {"type": "conversation.item.create", "event_id": event_id, "item": item}
        )
        if added:
            delegation.calls[call_id] = True
        return added

    def _client_delegation(self, delegation_id: str | None) -> Delegation | None:
        if delegation_id is None:
            return None
        if self._delegating.type != "client":
            raise LiveError(
                LiveErrorCode.DELEGATION_MISMATCH,
                "delegation ids name client delegations; with responses delegation send null "
                "here, and function results as response.item.create",
                "delegation_id",
            )
        delegation = self._delegations.get(delegation_id)
        if delegation is None or delegation.target != "client":
            raise LiveError(
                LiveErrorCode.UNKNOWN_DELEGATION_ID,
                f"no client delegation {delegation_id!r} in this session; "
                "session.delegation.created names them",
                "delegation_id",
            )
        return delegation

    def _need_responses(self, what: str) -> None:
        if self._delegating.type != "responses":
            raise LiveError(
                LiveErrorCode.DELEGATION_MISMATCH,
                f"{what} needs responses delegation; this session delegates to the client, "
                "which answers with session.commentary.append or session.thinking.append",
                "type",
            )

    def _new_delegation(self, target: str, response_id: str | None) -> Delegation:
        delegation = Delegation(new_id("deleg"), target)
        self._delegations[delegation.id] = delegation
        while len(self._delegations) > MAX_DELEGATIONS:
            oldest = self._delegations.pop(next(iter(self._delegations)))
            for call_id in oldest.calls:
                self._calls.pop(call_id, None)
        about: dict[str, Any] = {"id": delegation.id, "type": "delegation", "target": target}
        if response_id is not None:
            about["response_id"] = response_id
        self._emit("session.delegation.created", delegation=about, offset_ms=self._clock_ms())
        return delegation

    # --- the inner session's outputs -> GPT-Live ---------------------------------------

    def _inner(self, event: dict[str, Any]) -> bool:
        """Send the inner session a Realtime client event; False if it refused it."""
        if event.get("event_id") is None:
            event.pop("event_id", None)
        return self._take(self._session.receive(json.dumps(event), self._now))

    def _take(self, outputs: Sequence[Output]) -> bool:
        """Translate the inner session's outputs; False if an error was among them."""
        ok = True
        for output in outputs:
            if isinstance(output, dict):
                translate = self._translators.get(output["type"])
                if translate is not None:
                    ok = translate(output) and ok
            else:
                if isinstance(output, CancelResponse) and output.reason == "turn_merged":
                    self._merged.add(output.response_id)  # withdrawn whole: no cut
                self._out.append(output)
        return ok

    def _t_error(self, event: dict[str, Any]) -> bool:
        error = event["error"]
        self._error(error["code"], error["message"], error.get("event_id"), error.get("param"))
        return False

    def _t_speech_started(self, event: dict[str, Any]) -> bool:
        self._spans[event["item_id"]] = [event["audio_start_ms"], event["audio_start_ms"]]
        while len(self._spans) > MAX_TURN_SPANS:
            self._spans.pop(next(iter(self._spans)))
        self._out.append(Rendered(None, event))  # speech: the connection's idle clock
        return True

    def _t_speech_stopped(self, event: dict[str, Any]) -> bool:
        span = self._spans.get(event["item_id"])
        if span is not None:
            span[1] = event["audio_end_ms"]
        self._out.append(Rendered(None, event))
        return True

    def _t_committed(self, event: dict[str, Any]) -> bool:
        at = self._clock_ms()
        self._spans.setdefault(event["item_id"], [at, at])
        return True

    def _t_response_created(self, event: dict[str, Any]) -> bool:
        response_id = event["response"]["id"]
        reply = self._replies[response_id] = Reply(response_id)
        self._want_response = False  # this response sees everything asked for so far
        self._awaiting = None
        self._out.append(Rendered(None, event))
        continues, self._continues = self._continues, None
        if continues is not None and self._delegating.type == "responses":
            self._open_backend(reply, continues)
        return True

    def _t_item_added(self, event: dict[str, Any]) -> bool:
        reply = self._replies.get(event["response_id"])
        item = event["item"]
        if reply is None:
            return True
        if item["type"] == "message":
            found = next((i for i in reversed(self._session.items) if i.id == item["id"]), None)
            if found is not None:
                reply.voice = Voice(found)
        elif item["type"] == "function_call" and self._delegating.type == "responses":
            backend = self._backend(reply)
            self._close_reasoning(backend)
            backend.output.append(item["id"])
            self._wrap(
                backend,
                "response.output_item.added",
                output_index=len(backend.output) - 1,
                item=function_call(item, "in_progress"),
            )
        return True

    def _t_call_delta(self, event: dict[str, Any]) -> bool:
        backend = self._backend_of(event)
        if backend is not None:
            self._wrap(
                backend,
                "response.function_call_arguments.delta",
                item_id=event["item_id"],
                output_index=backend.output.index(event["item_id"]),
                delta=event["delta"],
            )
        return True

    def _t_call_done(self, event: dict[str, Any]) -> bool:
        backend = self._backend_of(event)
        if backend is not None:
            self._wrap(
                backend,
                "response.function_call_arguments.done",
                item_id=event["item_id"],
                output_index=backend.output.index(event["item_id"]),
                name=event["name"],
                arguments=event["arguments"],
            )
        return True

    def _t_item_done(self, event: dict[str, Any]) -> bool:
        reply = self._replies.get(event["response_id"])
        item = event["item"]
        if reply is None or item["type"] != "function_call":
            return True
        completed = item["status"] == "completed"
        if reply.backend is not None:
            backend = reply.backend
            if completed:  # it awaits its output
                backend.calls.append(item["call_id"])
                backend.delegation.calls[item["call_id"]] = False
                self._calls[item["call_id"]] = backend.delegation
            self._wrap(
                backend,
                "response.output_item.done",
                output_index=backend.output.index(item["id"]),
                item=function_call(item, item["status"]),
            )
        elif completed and item["name"] == DELEGATE_TOOL_NAME:
            delegation = self._new_delegation("client", None)
            delegation.calls[item["call_id"]] = False
            self._calls[item["call_id"]] = delegation
        return True

    def _t_audio(self, event: dict[str, Any]) -> bool:
        wire = {"type": "session.output_audio.delta", "event_id": new_id("event")}
        self._out.append(Rendered({**wire, "delta": event["delta"]}, event))
        reply = self._replies.get(event["response_id"])
        voice = reply.voice if reply is not None else None
        if voice is None:
            return True
        if voice.start_ms is None:
            voice.start_ms = self._clock_ms()
        item = voice.item
        words = [w for w in item.words if w.end_char > voice.said and w.start_ms < item.audio_ms]
        if words:  # with the punctuation that follows the last, where it has come
            end, text = words[-1].end_char, item.text or ""
            while end < len(text) and not (text[end].isspace() or text[end].isalnum()):
                end += 1
            start_ms, end_ms = words[0].start_ms, words[-1].end_ms
            self._say(
                event["response_id"], voice, end, voice.start_ms + start_ms, voice.start_ms + end_ms
            )
        return True

    def _say(
        self, response_id: str, voice: Voice, end: int, start_ms: float, end_ms: float
    ) -> None:
        """The output transcript of `voice` up to character `end`."""
        text = (voice.item.text or "")[voice.said : end]
        voice.said = max(voice.said, end)
        if not text:
            return
        wire = {
            "type": "session.output_transcript.delta",
            "event_id": new_id("event"),
            "delta": text,
            "start_ms": int(start_ms),
            "end_ms": int(max(start_ms, end_ms)),
        }
        # purged with the reply's audio when a barge-in cancels it
        stand_in = {"type": "response.output_audio_transcript.delta", "response_id": response_id}
        self._out.append(Rendered(wire, stand_in))

    def _t_reasoning(self, event: dict[str, Any]) -> bool:
        reply = self._replies.get(event["response_id"])
        if reply is None or self._delegating.type != "responses":
            return True
        backend = self._backend(reply)
        if backend.reasoning_id is None:
            backend.reasoning_id = new_id("rs")
            backend.reasoning = ""
            backend.output.append(backend.reasoning_id)
            self._wrap(
                backend,
                "response.output_item.added",
                output_index=len(backend.output) - 1,
                item=reasoning_item(backend.reasoning_id, "", "in_progress"),
            )
        backend.reasoning += event["delta"]
        self._wrap(
            backend,
            "response.reasoning_text.delta",
            item_id=backend.reasoning_id,
            output_index=backend.output.index(backend.reasoning_id),
            content_index=0,
            delta=event["delta"],
        )
        return True

    def _t_response_done(self, event: dict[str, Any]) -> bool:
        response = event["response"]
        reply = self._replies.pop(response["id"], None)
        status = response["status"]
        if reply is not None and reply.backend is not None:
            self._finish_backend(reply.backend, response)
        voice = reply.voice if reply is not None else None
        if voice is not None:
            details = response.get("status_details") or {}
            if status in ("completed", "incomplete"):  # the rest of its text, at its end
                end = self._clock_ms() if voice.start_ms is None else voice.start_ms
                end += 0 if voice.start_ms is None else voice.item.audio_ms
                self._say(response["id"], voice, len(voice.item.text or ""), end, end)
            elif details.get("reason") == "turn_detected" and self._phase is Phase.STARTED:
                if response["id"] not in self._merged:  # a merged turn's reply leaves whole
                    self._cut_to_heard(voice)
        self._merged.discard(response["id"])
        usage = {"type": "session.usage.updated", "event_id": new_id("event")}
        self._out.append(Rendered({**usage, "usage": self._usage()}, event))
        return True

    def _cut_to_heard(self, voice: Voice) -> None:
        """A barge-in stopped the voice: the reply in the conversation keeps what could have
        played (GPT-Live clients send no truncate: the server's estimate on its clock)."""
        played = 0.0
        if voice.start_ms is not None:
            played = self._clock_ms() - voice.start_ms + self._audio_lead_ms
        heard = int(min(max(played, 0.0), voice.item.audio_ms))
        self._inner(
            {
                "type": "conversation.item.truncate",
                "item_id": voice.item.id,
                "content_index": 0,
                "audio_end_ms": heard,
            }
        )

    def _t_transcript_delta(self, event: dict[str, Any]) -> bool:
        item_id = event["item_id"]
        self._transcribed.add(item_id)
        self._user_transcript(item_id, event["delta"])
        return True

    def _t_transcript_done(self, event: dict[str, Any]) -> bool:
        item_id = event["item_id"]
        if item_id not in self._transcribed:  # no delta came: the whole text at once
            self._user_transcript(item_id, event["transcript"])
        self._transcribed.discard(item_id)
        self._spans.pop(item_id, None)
        return True

    def _t_transcript_failed(self, event: dict[str, Any]) -> bool:
        self._transcribed.discard(event["item_id"])
        self._spans.pop(event["item_id"], None)
        return True  # GPT-Live has no event for it: the client just gets no transcript

    def _user_transcript(self, item_id: str, text: str) -> None:
        if not text:
            return
        at = self._clock_ms()
        start, end = self._spans.get(item_id, [at, at])
        self._emit(
            "session.input_transcript.delta",
            delta=text,
            start_ms=int(start),
            end_ms=int(max(start, end)),
        )

    # --- the wrapped Responses stream (responses delegation) ---------------------------

    def _backend(self, reply: Reply) -> Backend:
        return reply.backend if reply.backend is not None else self._open_backend(reply, None)

    def _backend_of(self, event: dict[str, Any]) -> Backend | None:
        reply = self._replies.get(event["response_id"])
        return reply.backend if reply is not None else None

    def _open_backend(self, reply: Reply, delegation: Delegation | None) -> Backend:
        if delegation is None:
            delegation = self._new_delegation("responses", reply.id)
        backend = reply.backend = Backend(delegation, reply.id)
        self._wrap(backend, "response.created", response=self._snapshot(backend, "in_progress"))
        return backend

    def _finish_backend(self, backend: Backend, response: dict[str, Any]) -> None:
        status = response["status"]
        if status == "completed" and backend.calls:
            self._awaiting = backend.delegation  # response.create goes on once all are in
        self._close_reasoning(backend, "completed" if status == "completed" else "incomplete")
        usage = responses_usage(response.get("usage"))
        if status == "completed":
            snapshot = self._snapshot(backend, "completed", usage=usage)
            self._wrap(backend, "response.completed", response=snapshot)
        elif status == "failed":
            error = (response.get("status_details") or {}).get("error") or {}
            failure = {
                "code": "server_error",
                "message": error.get("message") or "the response failed",
                "type": error.get("code"),
            }
            snapshot = self._snapshot(backend, "failed", usage=usage, error=failure)
            self._wrap(backend, "response.failed", response=snapshot)
        else:  # max_output_tokens, or a barge-in cut the voice and the reasoning with it
            reason = (response.get("status_details") or {}).get("reason")
            details = {"reason": "max_output_tokens"} if reason == "max_output_tokens" else None
            snapshot = self._snapshot(backend, "incomplete", usage=usage, incomplete=details)
            self._wrap(backend, "response.incomplete", response=snapshot)

    def _close_reasoning(self, backend: Backend, status: str = "completed") -> None:
        reasoning_id = backend.reasoning_id
        if reasoning_id is None:
            return
        index = backend.output.index(reasoning_id)
        self._wrap(
            backend,
            "response.reasoning_text.done",
            item_id=reasoning_id,
            output_index=index,
            content_index=0,
            text=backend.reasoning,
        )
        item = reasoning_item(reasoning_id, backend.reasoning, status)
        self._wrap(backend, "response.output_item.done", output_index=index, item=item)
        backend.reasoning_id = None

    def _snapshot(
        self,
        backend: Backend,
        status: str,
        *,
        usage: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        incomplete: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The response as GPT-Live's lifecycle events carry it: without instructions, tools
        or output (collect output items from their own events)."""
        responses = self._delegating.responses
        return {
            "id": backend.response_id,
            "object": "response",
            "created_at": self._unix_ms() / 1000,
            "status": status,
            "model": responses.get("model") or self._model,
            "instructions": None,
            "output": [],
            "tools": [],
            "tool_choice": self._delegating.tool_choice,
            "parallel_tool_calls": bool(responses.get("parallel_tool_calls", False)),
            "max_output_tokens": self._delegating.max_output_tokens,
            "usage": usage,
            "error": error,
            "incomplete_details": incomplete,
        }

    def _wrap(self, backend: Backend, type_: str, **fields: Any) -> None:
        event = backend.wrap(type_, **fields)
        self._emit("response.event", delegation_id=backend.delegation.id, event=event)

    # --- ending ------------------------------------------------------------------------

    def _end(
        self,
        reason: str,
        ws_code: int,
        message: str,
        code: ErrorCode | None,
        client_event_id: str | None = None,
    ) -> None:
        """Cancel what runs, then `session.closed` and the close (`code`: the server's reason,
        told in an error event first)."""
        self._phase = Phase.CLOSED
        self._want_response = False
        outputs = self._session.close(code or ErrorCode.SESSION_CLOSED, message, ws_code)
        self._take([o for o in outputs if not _is_error_or_close(o)])
        if code is not None:
            self._error(code, message, None, None)
        self._emit(
            "session.closed",
            client_event_id=client_event_id,
            reason=reason,
            session=self._resource(),
            usage=self._usage(),
        )
        self._out.append(Close(ws_code, message))

    # --- helpers -----------------------------------------------------------------------

    def _resource(self) -> dict[str, Any]:
        """The session as GPT-Live echoes it (`session.started|updated|closed`)."""
        delegating = self._delegating
        delegation: dict[str, Any] = {
            "type": delegating.type,
            "acknowledgement_delay_ms": delegating.acknowledgement_delay_ms,
        }
        if delegating.type == "responses":
            delegation["responses"] = delegating.responses
        resource: dict[str, Any] = {
            "id": self.id,
            "expires_at": self._expires_at,
            "model": self._model,
            "status": "active",
            "instructions": self._instructions,
            "audio": {
                "format": render_format(self.config.input_format),
                "output": {"voice": self.config.voice},
            },
            "delegation": delegation,
            "input": self._input,
            "store": False,
        }
        if self._safety_identifier is not None:
            resource["safety_identifier"] = self._safety_identifier
        return resource

    def _usage(self) -> dict[str, Any]:
        return {"seconds": float(int(self._clock_ms() // 1000))}

    def _clock_ms(self) -> int:
        """Now on the session timeline: the input audio clock."""
        return int(self._session.turns.buffer.clock_ms)

    def _unix_ms(self) -> float:
        return self._started_at * 1000 + self._clock_ms()

    def _settle(self) -> list[MachineOutput]:
        """Start the response asked for (commentary, response.create) once the voice has the
        floor: no response running, the user not in a turn. Then the outputs."""
        if (
            self._want_response
            and self._phase is Phase.STARTED
            and self._session.response is None
            and self.turns.state in (TurnState.LISTENING, TurnState.MANUAL)
        ):
            self._want_response = False
            self._inner({"type": "response.create"})
        return self._drain()

    def _emit(self, type_: str, **fields: Any) -> None:
        if fields.get("client_event_id", "") is None:
            del fields["client_event_id"]
        self._out.append({"type": type_, "event_id": new_id("event"), **fields})

    def _error(
        self, code: str, message: str, client_event_id: str | None, param: str | None
    ) -> None:
        error = error_object(code, message, param=param) | {"client_event_id": client_event_id}
        self._emit("error", client_event_id=client_event_id, error=error)

    def _drain(self) -> list[MachineOutput]:
        out, self._out = self._out, []
        return out


# --- helpers -------------------------------------------------------------------------------


def _is_error_or_close(output: Output) -> bool:
    return isinstance(output, Close) or (isinstance(output, dict) and output["type"] == "error")


def _silence(fmt: AudioFormat, n_bytes: int) -> bytes:
    return encode_samples(fmt, np.zeros(n_bytes // fmt.bytes_per_sample, np.int16))
