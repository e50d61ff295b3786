"""A response and its output items: its lifecycle as a table, and what it writes.

The lifecycle, in the style of the turn-taking machine (streaming/turns/machine.py): the
session holds at most one response, in one of three states, and moves it only as `TRANSITIONS`
allows; any other move is a bug of the session's, raised as `ResponseStateError`.

    IDLE --SPECULATE--> SPECULATIVE --CONFIRM--> ACTIVE --END--> IDLE
    IDLE --START--> ACTIVE            SPECULATIVE --DISCARD--> IDLE

A speculative response's events are held back: the client never hears of it unless it is
confirmed, and then they go out in order. An active response's output items appear as the
model writes them: a message when the answer's first text or audio comes, a function call when
the model starts one.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from server.protocol.audio import TTS_SAMPLE_RATE, OutputEncoder
from server.protocol.config import ResponseOptions
from server.protocol.conversation import Conversation
from server.protocol.items import Item, function_call_item, new_id
from server.protocol.outputs import Outputs
from server.protocol.render import render_item, render_part, render_response, render_usage
from server.protocol.speech_out import audio_delta, audio_tail
from server.protocol.stats import SessionStats
from streaming.responder import (
    AnswerDelta,
    ReasoningDelta,
    ResponseEvent,
    ResponseFinished,
    SpeechChunk,
    ToolCallDelta,
    ToolCalled,
)
from streaming.tool_calls import canonical_arguments


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

    @classmethod
    def new(cls, options: ResponseOptions) -> ActiveResponse:
        speak = "audio" in options.output_modalities
        return cls(new_id("resp"), options, OutputEncoder(options.output_format) if speak else None)

    def index_of(self, item: Item) -> int:
        return self.output.index(item)


# --- the lifecycle -------------------------------------------------------------------------


class ResponseState(enum.Enum):
    IDLE = "idle"  # no response
    SPECULATIVE = "speculative"  # started on a pause, before the turn closed; held back
    ACTIVE = "active"  # the client's: from response.created to response.done


class Move(enum.Enum):
    SPECULATE = "speculate"  # a pause: start on the audio so far
    START = "start"  # a closed turn or response.create
    CONFIRM = "confirm"  # the speculated turn committed as it was
    DISCARD = "discard"  # speech resumed, the client changed the context, or it failed unseen
    END = "end"  # response.done: completed, incomplete, cancelled or failed


TRANSITIONS: dict[tuple[ResponseState, Move], ResponseState] = {
    (ResponseState.IDLE, Move.SPECULATE): ResponseState.SPECULATIVE,
    (ResponseState.IDLE, Move.START): ResponseState.ACTIVE,
    (ResponseState.SPECULATIVE, Move.CONFIRM): ResponseState.ACTIVE,
    (ResponseState.SPECULATIVE, Move.DISCARD): ResponseState.IDLE,
    (ResponseState.ACTIVE, Move.END): ResponseState.IDLE,
}


class ResponseStateError(Exception):
    """A move the lifecycle does not allow: a bug in the session, never the client's doing."""


class ResponseSlot:
    """The session's one response, and the responder events held while it is speculative."""

    def __init__(self) -> None:
        self.state = ResponseState.IDLE
        self.response: ActiveResponse | None = None
        self.held: list[ResponseEvent] = []

    @property
    def active(self) -> ActiveResponse | None:
        return self.response if self.state is ResponseState.ACTIVE else None

    @property
    def speculative(self) -> ActiveResponse | None:
        return self.response if self.state is ResponseState.SPECULATIVE else None

    def move(self, move: Move, response: ActiveResponse | None = None) -> list[ResponseEvent]:
        """Take `move` (SPECULATE and START bring the response); returns the events held back
        (on CONFIRM: to apply now)."""
        target = TRANSITIONS.get((self.state, move))
        if target is None:
            raise ResponseStateError(f"a response cannot {move.value} while {self.state.value}")
        if (response is not None) != (move in (Move.SPECULATE, Move.START)):
            raise ResponseStateError(f"{move.value} takes a response only to begin one")
        held, self.held = self.held, []
        self.state = target
        if response is not None:
            self.response = response
        elif target is ResponseState.IDLE:
            self.response = None
        return held


# --- what a response writes ----------------------------------------------------------------


class ResponseWriter:
    """Turns the responder's events into the response's items and their events."""

    def __init__(
        self,
        outputs: Outputs,
        conversation: Conversation,
        stats: SessionStats,
        clock_ms: Callable[[], float],  # the input audio's clock: when the first audio came
        show_reasoning: Callable[[], bool],
    ) -> None:
        self.outputs = outputs
        self.conversation = conversation
        self.stats = stats
        self.clock_ms = clock_ms
        self.show_reasoning = show_reasoning
        self._apply: dict[type, Callable[[ActiveResponse, Any], None]] = {
            ReasoningDelta: self._on_reasoning,
            AnswerDelta: self._on_answer,
            SpeechChunk: self._on_speech,
            ToolCallDelta: self._on_call_delta,
            ToolCalled: self._on_tool_called,
        }

    def apply(self, response: ActiveResponse, event: ResponseEvent) -> None:
        """One responder event other than `ResponseFinished` (the session ends the response)."""
        self._apply[type(event)](response, event)

    def finish(
        self,
        response: ActiveResponse,
        status: str,
        details: dict[str, Any] | None,
        usage: dict[str, Any] | None,
        stage_seconds: dict[str, float] | None = None,
    ) -> None:
        """Close the response's items and say `response.done`."""
        if response.reasoning and self.show_reasoning():
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
        beta = self.outputs.beta
        self.outputs.emit(
            "response.done",
            response=render_response(
                response.id,
                response.options,
                beta,
                status=status,
                status_details=details,
                output=[render_item(item, beta) for item in response.output],
                usage=usage,
                stage_seconds=stage_seconds,
            ),
        )

    def finished(self, response: ActiveResponse, event: ResponseFinished) -> None:
        details = None
        if event.status == "incomplete":
            details = {"type": "incomplete", "reason": "max_output_tokens"}
        usage = render_usage(event.input_tokens, event.reasoning_tokens, event.answer_tokens)
        self.finish(response, event.status, details, usage, event.stage_seconds)

    def _on_reasoning(self, response: ActiveResponse, event: ReasoningDelta) -> None:
        response.reasoning += event.text
        if self.show_reasoning():
            self._emit_part(
                "response.reasoning_text.delta", response, response.message_id, delta=event.text
            )

    def _on_answer(self, response: ActiveResponse, event: AnswerDelta) -> None:
        message = self._message(response)
        message.text = (message.text or "") + event.text
        kind = "output_audio_transcript" if response.encoder else "output_text"
        self._emit_part(f"response.{kind}.delta", response, message.id, delta=event.text)

    def _on_speech(self, response: ActiveResponse, event: SpeechChunk) -> None:
        if response.encoder is None:
            return  # a text-only response has no audio to send
        message = self._message(response)
        if response.first_audio_clock_ms is None:
            response.first_audio_clock_ms = self.clock_ms()
        delta, added_ms = audio_delta(response.encoder, message, event.chunk)
        self.stats.audio_out_ms += added_ms
        if delta:
            self._emit_part("response.output_audio.delta", response, message.id, delta=delta)

    def _on_call_delta(self, response: ActiveResponse, event: ToolCallDelta) -> None:
        call = self._call(response, event.index, event.name)
        call.arguments = (call.arguments or "") + event.delta
        self._emit_call("response.function_call_arguments.delta", response, call, delta=event.delta)

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
        previous = self.conversation.append(item)
        response.output.append(item)
        self.outputs.emit(
            "response.output_item.added",
            response_id=response.id,
            output_index=response.index_of(item),
            item=render_item(item, self.outputs.beta),
        )
        self.outputs.announce_item(item, previous, done=False)

    def _end_item(self, response: ActiveResponse, item: Item) -> None:
        rendered = render_item(item, self.outputs.beta)
        self.outputs.emit(
            "response.output_item.done",
            response_id=response.id,
            output_index=response.index_of(item),
            item=rendered,
        )
        self.outputs.emit("conversation.item.done", item=rendered)

    def _finish_message(self, response: ActiveResponse, message: Item, status: str) -> None:
        message.status = "completed" if status == "completed" else "incomplete"
        if response.encoder is not None:
            tail = audio_tail(response.encoder) if status != "cancelled" else ""
            if tail:
                self._emit_part("response.output_audio.delta", response, message.id, delta=tail)
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

    def _emit_part(self, type_: str, response: ActiveResponse, item_id: str, **fields: Any) -> None:
        message = response.message
        index = response.index_of(message) if message is not None else len(response.output)
        self.outputs.emit(
            type_,
            response_id=response.id,
            item_id=item_id,
            output_index=index,
            content_index=0,
            **fields,
        )

    def _emit_call(self, type_: str, response: ActiveResponse, call: Item, **fields: Any) -> None:
        self.outputs.emit(
            type_,
            response_id=response.id,
            item_id=call.id,
            output_index=response.index_of(call),
            call_id=call.call_id,
            **fields,
        )
