"""GPT-Live's machine without sockets (server/protocol/live.py): client events in, GPT-Live events,
rendered events and the Realtime machine's actions out.

Every event a client would see is checked against the official `openai` SDK's own types
(`openai.types.live`), and the Responses events wrapped in `response.event` against
`openai.types.responses`, strictly, as test_session.py checks the Realtime dialect.
"""

from __future__ import annotations

import base64
import json
import typing
from typing import Any

import numpy as np
import pytest
from openai.types.live.server_event import ServerEvent
from openai.types.responses.response_stream_event import ResponseStreamEvent

from server.protocol import (
    CancelResponse,
    Close,
    ErrorCode,
    LiveSession,
    Rendered,
    SessionConfig,
    StartResponse,
    Transcribe,
)
from server.protocol.live import AUDIO_LEAD_MS, COMMENTARY_NOTE, THINKING_NOTE, LiveErrorCode
from server.protocol.live_settings import DELEGATE_TOOL
from streaming.responder import (
    ReasoningDelta,
    ResponseEvent,
    ResponseFinished,
    ToolCallDelta,
    ToolCalled,
)
from streaming.tool_calls import ToolCall
from streaming.turns.detection import ServerVad
from tests.server.espeak_responder import DEFAULT_REASONING, DEFAULT_REPLY, FixedReplyResponder
from tests.support.presets import CALCULATE
from tests.support.speech import BARGE_IN_LEAD_MS, spoken

VOICES = ["en-us", "en-gb"]
APPEND_MS = 20
RESPONSES = {"type": "responses", "responses": {"model": "gpt-5.4-mini", "tools": [CALCULATE]}}


def _by_type(union: Any) -> dict[str, Any]:
    members = typing.get_args(typing.get_args(union)[0])
    return {typing.get_args(m.model_fields["type"].annotation)[0]: m for m in members}


LIVE_EVENTS = _by_type(ServerEvent)
RESPONSES_EVENTS = _by_type(ResponseStreamEvent)
KNOWN_CODES = {str(code) for code in ErrorCode} | {str(code) for code in LiveErrorCode}


def check_live_parses(event: dict[str, Any]) -> None:
    """Strict validation against the SDK's model for this event type (and, inside
    `response.event`, the Responses event's)."""
    text = json.dumps(event, allow_nan=False)
    text.encode("utf-8")
    LIVE_EVENTS[event["type"]].model_validate(event)
    if event["type"] == "response.event":
        inner = event["event"]
        RESPONSES_EVENTS[inner["type"]].model_validate(inner)
    if event["type"] == "error":
        assert event["error"]["code"] in KNOWN_CODES, event


def wire(outputs: list[Any]) -> list[dict[str, Any]]:
    """What goes to the client: events, and rendered events' wire side."""
    events = []
    for output in outputs:
        if isinstance(output, Rendered):
            if output.wire is not None:
                events.append(output.wire)
        elif isinstance(output, dict):
            events.append(output)
    return events


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def errors(events: list[dict[str, Any]]) -> list[str]:
    return [e["error"]["code"] for e in events if e["type"] == "error"]


def wrapped(events: list[dict[str, Any]]) -> list[str]:
    return [e["event"]["type"] for e in events if e["type"] == "response.event"]


def audio_appends(pcm: np.ndarray) -> list[dict[str, Any]]:
    step = 24_000 * APPEND_MS // 1000
    return [
        {
            "type": "session.input_audio.append",
            "audio": base64.b64encode(pcm[i : i + step].astype("<i2").tobytes()).decode(),
        }
        for i in range(0, len(pcm), step)
    ]


class LiveHarness:
    """A GPT-Live session and everything it said."""

    def __init__(self, start: dict[str, Any] | None = None) -> None:
        config = SessionConfig(voice="en-us", turn_detection=ServerVad(silence_duration_ms=500))
        self.session = LiveSession(config, VOICES, started_at=1_700_000_000.0, expires_at=1)
        self.events: list[dict[str, Any]] = []
        self.actions: list[Any] = []
        self.rendered: list[Rendered] = []
        self.clock = 0.0
        assert self.session.start() == []
        if start is not None:
            [started] = self.send({"type": "session.start", "session": start})
            assert started["type"] == "session.started", started

    def take(self, outputs: list[Any]) -> list[dict[str, Any]]:
        self.actions += [o for o in outputs if not isinstance(o, dict | Rendered)]
        self.rendered += [o for o in outputs if isinstance(o, Rendered)]
        events = wire(outputs)
        for event in events:
            check_live_parses(event)
        self.events += events
        return events

    def send(self, event: dict[str, Any] | str | bytes) -> list[dict[str, Any]]:
        self.clock += 0.02
        message = event if isinstance(event, str | bytes) else json.dumps(event)
        return self.take(self.session.receive(message, self.clock))

    def send_all(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [out for event in events for out in self.send(event)]

    def speak(self, text: str = "what is seven times six", **kwargs: Any) -> list[dict]:
        return self.send_all(audio_appends(spoken(text, **kwargs)))

    def feed(self, response_id: str, event: ResponseEvent) -> list[dict[str, Any]]:
        return self.take(self.session.on_response_event(response_id, event))

    def feed_all(self, response_id: str, events: list[ResponseEvent]) -> list[dict[str, Any]]:
        return [out for event in events for out in self.feed(response_id, event)]

    def last_start(self) -> StartResponse:
        starts = [a for a in self.actions if isinstance(a, StartResponse)]
        assert starts, "no response was started"
        return starts[-1]

    async def play(self, limit: int | None = None, **kwargs: Any) -> list[dict[str, Any]]:
        action = self.last_start()
        stream = FixedReplyResponder(**kwargs).respond(action.request)
        events: list[dict[str, Any]] = []
        count = 0
        async for event in stream:
            events += self.feed(action.response_id, event)
            count += 1
            if limit is not None and count >= limit:
                break
        await stream.aclose()  # type: ignore[attr-defined]
        return events

    def items(self) -> list[Any]:
        return self.session._session.items


def start(**fields: Any) -> dict[str, Any]:
    return {"model": "gpt-live-1", **fields}


def call_events(name: str, arguments: str) -> list[ResponseEvent]:
    half = len(arguments) // 2
    return [
        ReasoningDelta("I need the application for this."),
        ToolCallDelta(0, name, arguments[:half]),
        ToolCallDelta(0, name, arguments[half:]),
        ToolCalled(0, ToolCall(name, arguments)),
        ResponseFinished(input_tokens=30, reasoning_tokens=8, answer_tokens=12),
    ]


# --- starting ------------------------------------------------------------------------------


def test_nothing_before_session_start_and_one_error_for_anything_else() -> None:
    h = LiveHarness()
    for event in (
        {"type": "session.input_audio.append", "audio": "AAAA", "event_id": "e1"},
        {"type": "session.commentary.append", "content": "hi", "delegation_id": None},
        {"type": "session.close"},
    ):
        out = h.send(event)
        assert errors(out) == [LiveErrorCode.SESSION_NOT_STARTED]
    assert h.events[0]["error"]["client_event_id"] == "e1"
    assert h.events[0]["client_event_id"] == "e1"
    assert h.session.stats.audio_in_ms == 0 and not h.session.started


def test_session_start_is_answered_with_the_session_in_force() -> None:
    h = LiveHarness()
    [started] = h.send(
        {
            "type": "session.start",
            "event_id": "start_1",
            "session": {
                "model": "gpt-live-1",
                "instructions": "You are a calculator.",
                "audio": {"output": {"voice": "en-gb"}},
                "input": [
                    {"role": "developer", "content": [{"type": "input_text", "text": "Be brief."}]},
                    {"role": "user", "content": [{"type": "input_text", "text": "hello"}]},
                    {"role": "assistant", "content": [{"type": "output_text", "text": "Hi."}]},
                ],
                "safety_identifier": "user-1",
            },
        }
    )
    assert started["type"] == "session.started" and started["client_event_id"] == "start_1"
    session = started["session"]
    assert session["model"] == "gpt-live-1" and session["status"] == "active"
    assert session["audio"] == {
        "format": {"type": "audio/pcm", "rate": 24_000},
        "output": {"voice": "en-gb"},
    }
    assert session["delegation"] == {"type": "client", "acknowledgement_delay_ms": 0}
    assert session["instructions"] == "You are a calculator." and session["store"] is False
    assert len(session["input"]) == 3 and session["safety_identifier"] == "user-1"
    # the inner Realtime session: audio out, transcripts on, the delegate tool, the history
    config = h.session.config
    assert config.output_modalities == ("audio",) and config.transcription is not None
    assert config.tools == (DELEGATE_TOOL,) and config.voice == "en-gb"
    assert config.turn_detection is not None and config.turn_detection.interrupt_response
    assert [(i.role, i.text) for i in h.items()] == [
        ("system", "Be brief."),
        ("user", "hello"),
        ("assistant", "Hi."),
    ]


def test_a_g711_session_uses_one_format_both_ways() -> None:
    h = LiveHarness(start(audio={"format": {"type": "audio/pcmu", "rate": 8000}}))
    assert h.events[0]["session"]["audio"]["format"] == {"type": "audio/pcmu", "rate": 8000}
    assert h.session.config.input_format == h.session.config.output_format
    assert h.session.config.input_format.codec == "pcmu"


@pytest.mark.parametrize(
    ("session", "code", "param"),
    [
        (start(store=True), ErrorCode.UNSUPPORTED_FEATURE, "session.store"),
        (
            start(delegation={"type": "decisions", "decisions": {}}),
            ErrorCode.UNSUPPORTED_FEATURE,
            "session.delegation.type",
        ),
        (
            start(triggers=[{"type": "decisions"}]),
            ErrorCode.UNSUPPORTED_FEATURE,
            "session.triggers",
        ),
        (start(client={"data_channel": {}}), ErrorCode.UNSUPPORTED_FEATURE, "session.client"),
        (
            start(audio={"output": {"voice": "marin"}}),
            ErrorCode.INVALID_VALUE,
            "session.audio.output.voice",
        ),
        (
            start(audio={"format": {"type": "audio/pcm", "rate": 44_100}}),
            ErrorCode.UNSUPPORTED_AUDIO_FORMAT,
            "session.audio.format.rate",
        ),
        (
            start(delegation={"type": "responses", "responses": {"tools": []}}),
            ErrorCode.MISSING_REQUIRED_PARAMETER,
            "session.delegation.responses.model",
        ),
        (
            start(
                delegation={
                    "type": "responses",
                    "responses": {"model": "m", "tools": [{"type": "web_search"}]},
                }
            ),
            ErrorCode.UNSUPPORTED_FEATURE,
            "session.delegation.responses.tools.0.type",
        ),
        (start(instructions="x" * 70_000), ErrorCode.INVALID_VALUE, "session.instructions"),
        (start(voice="en-us"), ErrorCode.UNKNOWN_PARAMETER, "session.voice"),
        ({"instructions": "no model"}, ErrorCode.MISSING_REQUIRED_PARAMETER, "session.model"),
    ],
)
def test_a_start_it_cannot_honour_is_refused_whole(
    session: dict[str, Any], code: ErrorCode, param: str
) -> None:
    h = LiveHarness()
    before = h.session.config
    out = h.send({"type": "session.start", "event_id": "s", "session": session})
    assert errors(out) == [code] and out[0]["error"]["param"] == param, out
    assert out[0]["error"]["client_event_id"] == "s"
    assert not h.session.started and h.session.config == before and h.items() == []
    # and a good start still works
    assert types(h.send({"type": "session.start", "session": start()})) == ["session.started"]


def test_a_second_start_is_refused() -> None:
    h = LiveHarness(start())
    out = h.send({"type": "session.start", "session": start(instructions="other")})
    assert errors(out) == [LiveErrorCode.SESSION_ALREADY_STARTED]


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("not json", ErrorCode.INVALID_JSON),
        ('{"no": "type"}', ErrorCode.MISSING_EVENT_TYPE),
        ('{"type": "input_audio_buffer.append", "audio": ""}', ErrorCode.UNKNOWN_EVENT_TYPE),
        ('{"type": "session.input_audio.append"}', ErrorCode.MISSING_REQUIRED_PARAMETER),
        ('{"type": "session.input_audio.append", "audio": "**"}', ErrorCode.INVALID_BASE64),
        ('{"type": "session.close", "extra": 1}', ErrorCode.UNKNOWN_PARAMETER),
        (
            '{"type": "session.commentary.append", "content": "x"}',
            ErrorCode.MISSING_REQUIRED_PARAMETER,
        ),
        ('{"type": "decision.create", "event_id": "d"}', ErrorCode.UNSUPPORTED_FEATURE),
        (
            '{"type": "session.output_audio.fixture.play", "audio": ""}',
            ErrorCode.UNSUPPORTED_FEATURE,
        ),
        (
            '{"type": "session.update", "session": {"instructions": "x"}}',
            ErrorCode.UNKNOWN_PARAMETER,
        ),
        (
            '{"type": "session.update", "session": {"delegation": {"type": "responses"}}}',
            ErrorCode.INVALID_VALUE,
        ),
        ('{"type": "response.create"}', LiveErrorCode.DELEGATION_MISMATCH),
        (
            '{"type": "session.thinking.append", "content": "x", "delegation_id": "deleg_x"}',
            LiveErrorCode.UNKNOWN_DELEGATION_ID,
        ),
        (
            '{"type": "session.thinking.append", "content": " ", "delegation_id": null}',
            ErrorCode.INVALID_VALUE,
        ),
        (
            json.dumps(
                {"type": "session.thinking.append", "content": "x" * 5000, "delegation_id": None}
            ),
            ErrorCode.INVALID_VALUE,
        ),
        ("[" * 1000, ErrorCode.INVALID_JSON),
    ],
)
async def test_bad_input_gets_one_error_and_the_session_goes_on(message: str, code: str) -> None:
    h = LiveHarness(start())
    items, config = list(h.items()), h.session.config
    out = h.send(message)
    assert errors(out) == [code] and len(out) == 1, out
    assert h.items() == items and h.session.config == config
    h.speak()  # still answers a question
    events = await h.play()
    assert "session.output_audio.delta" in types(events)


# --- a spoken turn -------------------------------------------------------------------------


async def test_a_spoken_question_gets_spoken_audio_and_timed_transcripts() -> None:
    h = LiveHarness(start())
    out = h.speak()
    assert types(out) == []  # turn-taking is the server's: nothing on the wire
    speech = [r.realtime["type"] for r in h.rendered]
    assert speech == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "response.created",
    ]  # for the connection's bookkeeping only
    action = h.last_start()
    assert action.request.tools == [DELEGATE_TOOL] and action.request.speak
    events = await h.play()
    kinds = types(events)
    assert set(kinds) == {
        "session.output_audio.delta",
        "session.output_transcript.delta",
        "session.usage.updated",
    }
    assert kinds[-1] == "session.usage.updated"
    audio = b"".join(base64.b64decode(e["delta"]) for e in events if "audio" in e["type"])
    assert len(audio) > 24_000 * 2  # over a second of 24 kHz PCM16
    said = [e for e in events if e["type"] == "session.output_transcript.delta"]
    assert "".join(e["delta"] for e in said) == DEFAULT_REPLY
    # on the session timeline, after the question, in order, about as long as the audio
    starts = [e["start_ms"] for e in said]
    assert starts == sorted(starts) and all(e["end_ms"] >= e["start_ms"] for e in said)
    assert starts[0] >= h.rendered[1].realtime["audio_end_ms"]  # after the question
    spoken_ms = len(audio) // 48
    assert said[-1]["end_ms"] - said[0]["start_ms"] == pytest.approx(spoken_ms, abs=400)
    # the bookkeeping side of what went out: each piece names its response
    done = [r for r in h.rendered if r.realtime["type"] == "response.done"]
    assert done[0].realtime["response"]["status"] == "completed"
    deltas = [r for r in h.rendered if r.realtime["type"] == "response.output_audio.delta"]
    assert {r.realtime["response_id"] for r in deltas} == {action.response_id}


async def test_the_user_transcript_comes_with_the_turns_span() -> None:
    h = LiveHarness(start())
    h.speak()
    [transcribe] = [a for a in h.actions if isinstance(a, Transcribe)]
    started, stopped = (r.realtime for r in h.rendered[:2])
    out = h.take(h.session.on_transcript_delta(transcribe.item_id, "what is "))
    out += h.take(h.session.on_transcript_delta(transcribe.item_id, "seven times six"))
    out += h.take(h.session.on_transcript_done(transcribe.item_id, "what is seven times six", {}))
    assert types(out) == ["session.input_transcript.delta"] * 2
    assert "".join(e["delta"] for e in out) == "what is seven times six"
    assert {(e["start_ms"], e["end_ms"]) for e in out} == {
        (started["audio_start_ms"], stopped["audio_end_ms"])
    }
    # a transcript that comes whole (no deltas) is one delta; a failed one is nothing
    h.speak("and eight times nine")
    second = [a for a in h.actions if isinstance(a, Transcribe)][-1]
    out = h.take(h.session.on_transcript_done(second.item_id, "and eight times nine", {}))
    assert [e["delta"] for e in out] == ["and eight times nine"]
    assert h.take(h.session.on_transcript_failed(second.item_id, "no")) == []


async def test_a_barge_in_stops_the_voice_and_keeps_what_could_have_played() -> None:
    h = LiveHarness(start())
    h.speak()
    first = h.last_start()
    # the responder runs far ahead of playback: two seconds of the reply are out at once
    before = await h.play(limit=len(DEFAULT_REASONING.split()) + 20)
    sent = [e for e in before if e["type"] == "session.output_audio.delta"]
    sent_ms = sum(len(base64.b64decode(e["delta"])) for e in sent) // 48
    assert sent_ms >= 1500
    at = h.session.turns.buffer.clock_ms
    h.speak("stop", lead_ms=BARGE_IN_LEAD_MS, tail_ms=0)  # heard long enough: not a merge
    cancels = [a for a in h.actions if isinstance(a, CancelResponse)]
    assert cancels == [CancelResponse(first.response_id, "turn_detected")]
    reply = next(i for i in h.items() if i.role == "assistant")
    assert reply.status == "incomplete"
    # kept: what played on the session's clock until the speech stopped the voice (while
    # "stop" was heard), and the lead the client had of it
    played_ms = h.session.turns.buffer.clock_ms - at
    assert AUDIO_LEAD_MS <= reply.audio_ms <= played_ms + AUDIO_LEAD_MS
    assert reply.audio_ms < sent_ms
    assert reply.text and DEFAULT_REPLY.startswith(reply.text) and reply.text != DEFAULT_REPLY


# --- context -------------------------------------------------------------------------------


def test_instructions_and_thinking_join_the_conversation_silently() -> None:
    h = LiveHarness(start())
    out = h.send(
        {
            "type": "session.instructions.append",
            "event_id": "i1",
            "content": "Answer in French.",
            "delegation_id": None,
        }
    )
    assert types(out) == ["session.instructions.appended"] and out[0]["client_event_id"] == "i1"
    out = h.send(
        {"type": "session.thinking.append", "content": "It is raining.", "delegation_id": None}
    )
    assert types(out) == ["session.thinking.appended"]
    assert out[0]["start_ms"] == out[0]["end_ms"] == h.session.turns.buffer.clock_ms
    assert [(i.role, i.text) for i in h.items()] == [
        ("system", "Answer in French."),
        ("system", THINKING_NOTE.format("It is raining.")),
    ]
    assert not [a for a in h.actions if isinstance(a, StartResponse)]


async def test_commentary_is_said_now_or_once_the_voice_is_free() -> None:
    h = LiveHarness(start())
    out = h.send(
        {
            "type": "session.commentary.append",
            "content": "Your order shipped.",
            "delegation_id": None,
        }
    )
    assert types(out) == ["session.commentary.appended"]
    first = h.last_start()
    assert first.request.turns[-1].text == COMMENTARY_NOTE.format("Your order shipped.")
    # a second one while the first is spoken: its response waits for the first's end
    h.send(
        {
            "type": "session.commentary.append",
            "content": "It arrives Monday.",
            "delegation_id": None,
        }
    )
    assert h.last_start() is first
    await h.play()
    second = h.last_start()
    assert second is not first
    assert COMMENTARY_NOTE.format("It arrives Monday.") in [t.text for t in second.request.turns]


# --- client delegation ---------------------------------------------------------------------


async def test_a_delegate_call_is_a_client_delegation_answered_by_commentary() -> None:
    h = LiveHarness(start())
    h.speak("what is the weather in Paris")
    response = h.last_start()
    out = h.feed_all(response.response_id, call_events("delegate", '{"task":"weather in Paris"}'))
    assert types(out) == ["session.delegation.created", "session.usage.updated"]
    delegation = out[0]["delegation"]
    assert delegation["target"] == "client" and delegation["type"] == "delegation"
    assert out[0]["offset_ms"] == int(h.session.turns.buffer.clock_ms)
    # the application's answer: the call's output, then the voice says it
    out = h.send(
        {
            "type": "session.commentary.append",
            "content": "Sunny, 24 degrees.",
            "delegation_id": delegation["id"],
        }
    )
    assert types(out) == ["session.commentary.appended"]
    answer = h.last_start()
    assert answer is not response
    call, result = answer.request.turns[-2:]
    assert call.tool_calls[0].name == "delegate"
    assert result.role == "tool" and result.text == "Sunny, 24 degrees."
    # thinking for it is silent: one more output, no response
    h.take(h.session.on_response_failed(answer.response_id))
    h.send(
        {
            "type": "session.thinking.append",
            "content": "Also windy.",
            "delegation_id": delegation["id"],
        }
    )
    assert h.last_start() is answer
    assert h.items()[-1].output == "Also windy."


def test_client_delegation_refuses_the_responses_events() -> None:
    h = LiveHarness(start())
    item = {"type": "function_call_output", "call_id": "call_1", "output": "42"}
    out = h.send({"type": "response.item.create", "item": item})
    assert errors(out) == [LiveErrorCode.DELEGATION_MISMATCH]


# --- responses delegation ------------------------------------------------------------------


async def test_a_function_call_is_a_wrapped_responses_stream_and_its_output_continues_it() -> None:
    h = LiveHarness(start(delegation=RESPONSES))
    assert h.session.config.tools == (CALCULATE,)
    assert h.events[0]["session"]["delegation"]["responses"]["model"] == "gpt-5.4-mini"
    h.speak()
    response = h.last_start()
    assert response.request.tools == [CALCULATE]
    out = h.feed_all(response.response_id, call_events("calculate", '{"expression":"7 * 6"}'))
    assert types(out)[0] == "session.delegation.created"
    delegation = out[0]["delegation"]
    assert delegation["target"] == "responses" and delegation["response_id"] == response.response_id
    assert wrapped(out) == [
        "response.created",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    inner = [e for e in out if e["type"] == "response.event"]
    assert {e["delegation_id"] for e in inner} == {delegation["id"]}
    assert [e["event"]["sequence_number"] for e in inner] == list(range(len(inner)))
    call = inner[5]["event"]["item"]
    assert call["status"] == "completed" and json.loads(call["arguments"]) == {
        "expression": "7 * 6"
    }
    usage = inner[-1]["event"]["response"]["usage"]
    assert usage["output_tokens_details"]["reasoning_tokens"] == 8
    assert types(out)[-1] == "session.usage.updated"
    # continuing before the output is in is refused; with it, the response goes on
    out = h.send({"type": "response.create", "event_id": "c1"})
    assert errors(out) == [LiveErrorCode.FUNCTION_CALL_OUTPUTS_REQUIRED]
    output = {"type": "function_call_output", "call_id": call["call_id"], "output": "42"}
    assert h.send({"type": "response.item.create", "item": output}) == []
    assert h.last_start() is response  # queued: nothing starts before response.create
    out = h.send({"type": "response.create"})
    going_on = h.last_start()
    assert going_on is not response and going_on.request.turns[-1].text == "42"
    assert types(out) == ["response.event"] and wrapped(out) == ["response.created"]
    assert out[0]["delegation_id"] == delegation["id"]  # the same delegation goes on
    events = await h.play()
    assert wrapped(events) == ["response.completed"]
    assert "session.output_audio.delta" in types(events)
    # an output for a call that has one already, or for no call, is refused
    out = h.send({"type": "response.item.create", "item": output})
    assert errors(out) == [ErrorCode.UNKNOWN_CALL_ID]


async def test_reasoning_goes_out_as_a_reasoning_item_when_asked_for() -> None:
    delegation = {
        "type": "responses",
        "responses": {"model": "m", "reasoning": {"effort": "low", "summary": "auto"}},
    }
    h = LiveHarness(start(delegation=delegation))
    assert h.session.config.reasoning_effort == "low" and h.session.config.reasoning_visible
    h.speak()
    events = await h.play()
    assert types(events)[0] == "session.delegation.created"
    kinds = wrapped(events)
    assert kinds[:3] == [
        "response.created",
        "response.output_item.added",
        "response.reasoning_text.delta",
    ]
    assert kinds[-3:] == [
        "response.reasoning_text.done",
        "response.output_item.done",
        "response.completed",
    ]
    done = [
        e["event"]
        for e in events
        if e.get("event", {}).get("type") == "response.reasoning_text.done"
    ]
    assert done[0]["text"].strip() == DEFAULT_REASONING
    # without a summary asked for, R1's reasoning stays inside: no delegation at all
    h2 = LiveHarness(start(delegation={"type": "responses", "responses": {"model": "m"}}))
    h2.speak()
    assert wrapped(await h2.play()) == []


def test_session_update_changes_the_backend_and_nothing_else() -> None:
    h = LiveHarness(start(delegation=RESPONSES))
    out = h.send(
        {
            "type": "session.update",
            "session": {
                "delegation": {
                    "type": "responses",
                    "responses": {"instructions": "Use the calculator.", "tools": []},
                }
            },
        }
    )
    assert types(out) == ["session.updated"]
    responses = out[0]["session"]["delegation"]["responses"]
    assert responses["model"] == "gpt-5.4-mini" and responses["tools"] == []
    assert h.session.config.tools == () and h.session.config.instructions.endswith(
        "Use the calculator."
    )
    config = h.session.config
    out = h.send({"type": "session.update", "session": {"delegation": {"type": "client"}}})
    assert errors(out) == [ErrorCode.INVALID_VALUE]
    assert out[0]["error"]["param"] == "session.delegation.type" and h.session.config == config


# --- microphone, closing -------------------------------------------------------------------


def test_a_muted_microphone_is_heard_as_silence() -> None:
    h = LiveHarness(start())
    assert types(h.send({"type": "session.input_audio.mute", "event_id": "m"})) == [
        "session.input_audio.muted"
    ]
    h.speak()
    assert h.rendered == [] and not [a for a in h.actions if isinstance(a, StartResponse)]
    assert h.session.stats.audio_in_ms > 1000  # the timeline went on
    assert types(h.send({"type": "session.input_audio.unmute"})) == ["session.input_audio.unmuted"]
    h.speak()
    assert h.last_start()


async def test_session_close_cancels_and_ends_with_session_closed() -> None:
    h = LiveHarness(start())
    h.speak()
    response = h.last_start()
    await h.play(limit=3)
    outputs = h.session.receive(json.dumps({"type": "session.close", "event_id": "bye"}), 9.0)
    out = h.take(outputs)
    assert types(out) == ["session.usage.updated", "session.closed"]
    closed = out[-1]
    assert closed["reason"] == "close_requested" and closed["client_event_id"] == "bye"
    assert closed["usage"]["seconds"] >= 1
    assert CancelResponse(response.response_id, "client_cancelled") in outputs
    assert outputs[-1] == Close(1000, "closed by the client")
    assert errors(h.send({"type": "session.close"})) == [ErrorCode.SESSION_CLOSED]


def test_the_server_closing_says_why() -> None:
    h = LiveHarness(start())
    outputs = h.session.close(ErrorCode.SESSION_EXPIRED, "the session reached its maximum duration")
    out = h.take(outputs)
    assert types(out) == ["error", "session.closed"] and out[-1]["reason"] == "expired"
    assert isinstance(outputs[-1], Close)
    refused = LiveHarness().session.close(ErrorCode.SESSION_LIMIT_REACHED, "full", 1013)
    assert errors(wire(refused)) == [ErrorCode.SESSION_LIMIT_REACHED]
    assert refused[-1] == Close(1013, "full")


async def test_a_paused_question_is_merged_as_for_realtime() -> None:
    h = LiveHarness(start())
    h.speak("what is seven", tail_ms=700)  # the pause closes the turn: a reply begins
    first = h.last_start()
    await h.play(limit=len(DEFAULT_REASONING.split()) + 2)  # its first audio goes out
    h.speak("times six", lead_ms=0)  # the user goes on, inside the merge window
    cancels = [a for a in h.actions if isinstance(a, CancelResponse)]
    assert cancels == [CancelResponse(first.response_id, "turn_merged")]
    merged = h.last_start()
    assert merged is not first
    users = [t for t in merged.request.turns if t.role == "user"]
    assert len(users) == 1  # one question, the whole utterance
    assert [i.role for i in h.items()] == ["user"]  # the withdrawn reply and the early turn left
