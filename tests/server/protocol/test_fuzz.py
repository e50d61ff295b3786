"""Property-based fuzzing (hypothesis) of the parser and of the sans-I/O session machine.

The session is driven as the server drives it: client messages (well-formed, nearly
well-formed and garbage), the responder's events for every response it starts, end-of-turn
verdicts and transcripts for the actions it asks for. Whatever comes in:
- nothing raises out of the session or the parser (bad input is an `error` event);
- every event out is valid JSON without NaN, encodes as UTF-8 (no lone surrogates), parses
  with the official SDK's types, and every error carries a known code;
- afterwards the session still holds a normal turn to `response.done`.

Bounded for CI (300 examples, under a minute on two cores). The longer run (its figure is in
docs/security.md; `FUZZ_REPORT` writes the counts of examples, messages and events):
    FUZZ_EXAMPLES=3000 FUZZ_REPORT=/tmp/fuzz.json \
        .venv/bin/python -m pytest tests/server/protocol/test_fuzz.py -q -p no:cacheprovider
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from server.app import default_config
from server.protocol import (
    CancelResponse,
    Close,
    ErrorCode,
    JudgeTurnEnd,
    LiveSession,
    Rendered,
    Session,
    StartResponse,
    Transcribe,
)
from server.protocol.audio import MODEL_SAMPLE_RATE
from server.protocol.errors import ProtocolError
from server.protocol.live import LiveErrorCode
from server.protocol.live_settings import DELEGATE_TOOL_NAME
from server.protocol.parse import load_json, parse_json, validate
from server.settings import Settings
from streaming.responder import (
    AnswerDelta,
    ReasoningDelta,
    ResponseEvent,
    ResponseFinished,
    SpeechChunk,
    ToolCallDelta,
    ToolCalled,
)
from streaming.tool_calls import ToolCall
from tests.server.protocol.test_live import check_live_parses
from tests.server.protocol.test_session import check_sdk_parses
from tests.support.speech import appends, spoken
from tts.base import AudioChunk, WordTiming

# hypothesis keeps caches (unicode tables, constants): outside the checkout
set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "step-realtime-hypothesis"))
VOICES = ["en-us", "en-gb"]
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # nothing written into the checkout
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
KNOWN_CODES = {str(code) for code in ErrorCode}
STATS = {"examples": 0, "messages": 0, "events_out": 0, "responses": 0}

# --- strategies ----------------------------------------------------------------------------------

NASTY_TEXT = st.sampled_from(
    ["", "\ud800", "a\udfffb", "\x00", "😀", "-1", "NaN", "null", "a" * 5000, "\u202e", "[" * 300]
)
TEXT = st.one_of(st.text(max_size=40), NASTY_TEXT)
NUMBER = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1, 2**31, 0.5, 1e308]),
)
JSON_LEAF = st.one_of(st.none(), st.booleans(), NUMBER, TEXT)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
ITEM_IDS = st.sampled_from(["item_a", "item_b", "", "x" * 80, "root"])
FORMATS = st.sampled_from(
    [
        {"type": "audio/pcm", "rate": 24000},
        {"type": "audio/pcm", "rate": 16000},
        {"type": "audio/pcm", "rate": 44100},
        {"type": "audio/pcmu"},
        {"type": "audio/pcma"},
        {"type": "audio/opus"},
    ]
)
TURN_DETECTION = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["server_vad", "semantic_vad", "nope"])},
        optional={
            "threshold": st.floats(-1, 2),
            "silence_duration_ms": st.integers(-10, 70_000),
            "prefix_padding_ms": st.integers(-10, 6000),
            "create_response": st.booleans(),
            "interrupt_response": st.booleans(),
            "idle_timeout_ms": st.integers(-5, 10_000),
        },
    ),
)
TOKENS = st.one_of(st.sampled_from([-1, 0, 1, 5, "inf", "-1", None, 10**9]), NUMBER)
TOOL = st.fixed_dictionaries(
    {"type": st.just("function"), "name": st.sampled_from(["add", "x" * 70, "", "bad name"])},
    optional={"parameters": JSON_VALUE, "description": TEXT},
)
SESSION_FIELDS = {
    "type": st.sampled_from(["realtime", "transcription", 5]),
    "instructions": TEXT,
    "output_modalities": st.lists(st.sampled_from(["text", "audio", "video"]), max_size=3),
    "modalities": st.lists(st.sampled_from(["text", "audio"]), max_size=2),
    "voice": st.sampled_from([*VOICES, "nobody", ""]),
    "max_output_tokens": TOKENS,
    "max_response_output_tokens": TOKENS,
    "temperature": NUMBER,
    "reasoning": st.fixed_dictionaries({}, optional={"effort": st.sampled_from(["low", "xx"])}),
    "include": st.lists(st.sampled_from(["response.reasoning_text", "nope"]), max_size=2),
    "truncation": st.one_of(
        st.sampled_from(["auto", "disabled", "other"]),
        st.fixed_dictionaries(
            {"type": st.just("retention_ratio"), "retention_ratio": st.floats(-1, 2)}
        ),
    ),
    "tools": st.lists(TOOL, max_size=3),
    "tool_choice": st.one_of(st.sampled_from(["auto", "none", "required"]), JSON_VALUE),
    "audio": st.fixed_dictionaries(
        {},
        optional={
            "input": st.fixed_dictionaries(
                {},
                optional={
                    "format": FORMATS,
                    "turn_detection": TURN_DETECTION,
                    "transcription": st.one_of(st.none(), st.just({"model": "whisper-1"})),
                },
            ),
            "output": st.fixed_dictionaries(
                {}, optional={"format": FORMATS, "voice": TEXT, "speed": NUMBER}
            ),
        },
    ),
    "input_audio_format": st.sampled_from(["pcm16", "g711_ulaw", "g711_alaw", "mp3"]),
    "turn_detection": TURN_DETECTION,
    "bogus": JSON_VALUE,
}
CONTENT = st.fixed_dictionaries(
    {"type": st.sampled_from(["input_text", "text", "output_text", "input_audio", "audio", "x"])},
    optional={
        "text": TEXT,
        "transcript": TEXT,
        "audio": st.sampled_from(["", "AAAA", "***", base64.b64encode(bytes(480)).decode()]),
    },
)
ITEM = st.fixed_dictionaries(
    {"type": st.sampled_from(["message", "function_call", "function_call_output", "x"])},
    optional={
        "id": ITEM_IDS,
        "role": st.sampled_from(["user", "assistant", "system", "tool"]),
        "content": st.lists(CONTENT, max_size=3),
        "call_id": st.sampled_from(["call_1", "", "call_2"]),
        "name": st.sampled_from(["add", "bad name"]),
        "arguments": TEXT,
        "output": TEXT,
    },
)
RESPONSE = st.fixed_dictionaries(
    {},
    optional={
        "output_modalities": st.lists(st.sampled_from(["text", "audio"]), max_size=2),
        "instructions": TEXT,
        "max_output_tokens": TOKENS,
        "temperature": NUMBER,
        "voice": TEXT,
        "conversation": st.sampled_from(["auto", "none", "x"]),
        "input": st.lists(JSON_VALUE, max_size=2),
        "tools": st.lists(TOOL, max_size=2),
        "metadata": JSON_VALUE,
    },
)


def _speech_appends() -> list[str]:
    return appends(spoken("what is seven times six", tail_ms=700))


SPEECH = _speech_appends()


def _event(type_: str, **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"type": st.just(type_)}, optional={"event_id": st.text(max_size=8), **fields}
    )


CLIENT_EVENTS = st.one_of(
    _event(
        "session.update",
        session=st.fixed_dictionaries({}, optional=SESSION_FIELDS),  # type: ignore[arg-type]
    ),
    _event(
        "input_audio_buffer.append",
        audio=st.one_of(
            st.binary(max_size=2000).map(lambda b: base64.b64encode(b).decode()),
            st.sampled_from(["", "***", "AAA"]),
            NUMBER,
        ),
    ),
    _event("input_audio_buffer.commit"),
    _event("input_audio_buffer.clear"),
    _event("conversation.item.create", item=ITEM, previous_item_id=ITEM_IDS),
    _event("conversation.item.retrieve", item_id=ITEM_IDS),
    _event("conversation.item.delete", item_id=ITEM_IDS),
    _event(
        "conversation.item.truncate",
        item_id=ITEM_IDS,
        content_index=st.integers(-1, 2),
        audio_end_ms=st.integers(-5, 10**7),
    ),
    _event("response.create", response=RESPONSE),
    _event("response.cancel", response_id=st.text(max_size=10)),
    _event("output_audio_buffer.clear"),
    _event("nonsense.event", extra=JSON_VALUE),
)


def _dump(event: Any) -> str:
    try:
        return json.dumps(event)  # NaN/Infinity are written as such: bad input too
    except (ValueError, RecursionError):  # pragma: no cover
        return "{}"


MESSAGES = st.one_of(
    CLIENT_EVENTS.map(_dump),
    CLIENT_EVENTS.map(_dump).map(lambda text: text.encode()),
    st.text(max_size=60),
    st.binary(max_size=60),
    st.integers(0, len(SPEECH) - 1).map(lambda i: SPEECH[i]),  # real speech, turn by turn
    st.just("SPEAK"),  # marker: the whole question, so that turns are detected
    st.sampled_from(["[" * 2000, '{"type":' * 200, '"\\ud800"', "1" * 5000, "{}", "[]", "null"]),
)
REPLY = st.lists(
    st.sampled_from(["reason", "answer", "speech", "finish", "fail"]), min_size=0, max_size=6
)


# --- the driver ----------------------------------------------------------------------------------


class Driver:
    """One session driven like `server.connection.Connection` drives it, checking every event."""

    def __init__(self, beta: bool) -> None:
        self.beta = beta
        self.session = Session(default_config(Settings(), VOICES), VOICES, beta=beta)
        self.clock = 0.0
        self.started: list[str] = []
        self.events: list[dict[str, Any]] = []
        self.take(self.session.start())

    def send(self, message: str | bytes) -> None:
        self.clock += 0.02
        STATS["messages"] += 1
        self.take(self.session.receive(message, self.clock))

    def take(self, outputs: list[Any]) -> None:
        assert isinstance(outputs, list)
        for output in outputs:
            if isinstance(output, dict):
                check_event(output, self.beta)
                self.events.append(output)
            elif isinstance(output, StartResponse):
                self.started.append(output.response_id)
            elif isinstance(output, CancelResponse):
                if output.response_id in self.started:
                    self.started.remove(output.response_id)
            elif isinstance(output, JudgeTurnEnd):
                self.take(self.session.on_turn_verdict(output.request_id, 0.9, self.clock))
            elif isinstance(output, Transcribe):  # as server.turn_work reports it
                seconds = round(len(output.audio) / MODEL_SAMPLE_RATE, 3)
                usage = {"type": "duration", "seconds": seconds}
                self.take(self.session.on_transcript_delta(output.item_id, "seven times"))
                self.take(self.session.on_transcript_done(output.item_id, "seven times six", usage))
            elif isinstance(output, Close):  # pragma: no cover - only close() closes
                raise AssertionError(f"a client message closed the session: {output}")

    def reply(self, steps: list[str]) -> None:
        """The responder's events for the oldest response started and not yet finished."""
        if not self.started:
            return
        response_id = self.started[0]
        STATS["responses"] += 1
        for step in steps:
            if step == "fail":
                self.started.remove(response_id)
                self.take(self.session.on_response_failed(response_id))
                return
            self.take(self.session.on_response_event(response_id, _responder_event(step)))
            if step == "finish":
                self.started.remove(response_id)
                return


def _responder_event(step: str) -> ResponseEvent:
    if step == "reason":
        return ReasoningDelta("7 * 6 = 42. ", tokens=5)
    if step == "answer":
        return AnswerDelta("Forty two. ", tokens=3)
    if step == "speech":
        pcm = (np.sin(np.arange(4800) / 5) * 3000).astype(np.int16)
        return SpeechChunk(AudioChunk(pcm, [WordTiming("forty", 0, 5, 0.0, 100.0)]))
    return ResponseFinished(input_tokens=10, reasoning_tokens=5, answer_tokens=3)


def check_event(event: dict[str, Any], beta: bool) -> None:
    STATS["events_out"] += 1
    text = json.dumps(event, allow_nan=False)  # raises on NaN / Infinity
    text.encode("utf-8")  # raises on a lone surrogate
    assert isinstance(event.get("type"), str)
    if event["type"] == "error":
        assert event["error"]["code"] in KNOWN_CODES, event
    check_sdk_parses(event, beta)


def normal_turn(driver: Driver) -> None:
    """After whatever came before: a text turn to `response.done`."""
    if driver.session.response is not None:
        driver.send(json.dumps({"type": "response.cancel"}))
    for response_id in list(driver.started):  # speculations and the like: let them end
        driver.take(driver.session.on_response_failed(response_id))
        driver.started.remove(response_id)
    driver.events.clear()
    item = {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "what is seven times six"}],
    }
    driver.send(json.dumps({"type": "conversation.item.create", "item": item}))
    response = {"output_modalities": ["text"], "max_output_tokens": 100}
    driver.send(json.dumps({"type": "response.create", "response": response}))
    assert driver.started, [e for e in driver.events if e["type"] == "error"]
    driver.reply(["answer", "finish"])
    done = [e for e in driver.events if e["type"] == "response.done"]
    assert done and done[-1]["response"]["status"] == "completed", driver.events[-3:]


# --- the tests -----------------------------------------------------------------------------------


@FUZZ
@given(messages=st.lists(st.tuples(MESSAGES, REPLY), max_size=25), beta=st.booleans())
def test_the_session_survives_any_sequence_of_messages(
    messages: list[tuple[str | bytes, list[str]]], beta: bool
) -> None:
    STATS["examples"] += 1
    driver = Driver(beta)
    for message, reply in messages:
        if message == "SPEAK":
            for append in SPEECH:
                driver.send(append)
        else:
            driver.send(message)
        driver.reply(reply)
    normal_turn(driver)
    _report()


@settings(max_examples=EXAMPLES * 4, deadline=None, database=None)
@given(message=st.one_of(st.text(), st.binary(), JSON_VALUE.map(_dump), CLIENT_EVENTS.map(_dump)))
def test_the_parser_raises_only_protocol_errors(message: str | bytes) -> None:
    try:
        data = parse_json(message)
        validate(data)
    except ProtocolError as error:
        assert str(error.code) in KNOWN_CODES
        assert error.message


def test_the_parser_refuses_what_cannot_be_encoded_again() -> None:
    for bad in ("[" * 100_000, '{"a": "\\ud800"}', '{"\\udc00": 1}', "[NaN]", "-Infinity"):
        try:
            load_json(bad)
        except ProtocolError as error:
            assert error.code == ErrorCode.INVALID_JSON
        else:
            raise AssertionError(f"{bad[:20]!r} was accepted")


def _report() -> None:
    """The running totals, for the long run's figure (`FUZZ_REPORT=path`)."""
    path = os.environ.get("FUZZ_REPORT")
    if path:
        with open(path, "w") as out:
            json.dump(STATS, out)


# --- GPT-Live (server/protocol/live.py) ----------------------------------------------------------

LIVE_CODES = KNOWN_CODES | {str(code) for code in LiveErrorCode}
LIVE_FORMATS = st.sampled_from(
    [
        {"type": "audio/pcm", "rate": 24000},
        {"type": "audio/pcm", "rate": 16000},
        {"type": "audio/pcm", "rate": 44100},
        {"type": "audio/pcmu", "rate": 8000},
        {"type": "audio/pcma"},
        {"type": "audio/opus", "rate": 48000},
    ]
)
LIVE_TOOL = st.one_of(TOOL, st.fixed_dictionaries({"type": st.sampled_from(["web_search", "mcp"])}))
RESPONSES_FIELDS = {
    "model": st.sampled_from(["gpt-5.4-mini", "", None]),
    "instructions": TEXT,
    "tools": st.lists(LIVE_TOOL, max_size=2),
    "tool_choice": st.one_of(st.sampled_from(["auto", "none", "required"]), JSON_VALUE),
    "reasoning": st.fixed_dictionaries(
        {},
        optional={
            "effort": st.sampled_from(["none", "low", "xx"]),
            "summary": st.sampled_from(["auto", "x"]),
        },
    ),
    "max_output_tokens": TOKENS,
    "parallel_tool_calls": st.booleans(),
    "bogus": JSON_VALUE,
}
LIVE_DELEGATION = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["client", "responses", "decisions", "nope"])},
        optional={
            "responses": st.fixed_dictionaries({}, optional=RESPONSES_FIELDS),  # type: ignore[arg-type]
            "acknowledgement_delay_ms": st.integers(-5, 5000),
        },
    ),
)
INITIAL_ITEM = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["developer", "user", "assistant", "system"]),
        "content": st.lists(
            st.fixed_dictionaries(
                {"text": TEXT}, optional={"type": st.sampled_from(["input_text", "output_text"])}
            ),
            max_size=2,
        ),
    }
)
LIVE_SESSION_FIELDS = {
    "model": st.sampled_from(["gpt-live-1", "", 5]),
    "instructions": TEXT,
    "audio": st.fixed_dictionaries(
        {},
        optional={
            "format": LIVE_FORMATS,
            "output": st.fixed_dictionaries(
                {}, optional={"voice": st.one_of(st.sampled_from([*VOICES, "marin"]), JSON_VALUE)}
            ),
        },
    ),
    "delegation": LIVE_DELEGATION,
    "input": st.lists(INITIAL_ITEM, max_size=3),
    "store": st.one_of(st.booleans(), st.none()),
    "triggers": st.lists(JSON_VALUE, max_size=1),
    "safety_identifier": TEXT,
    "bogus": JSON_VALUE,
}
DELEGATION_IDS = st.one_of(st.none(), st.sampled_from(["deleg_x", "", "LAST"]))
RESPONSE_ITEM = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("function_call_output")},
        optional={"call_id": st.sampled_from(["call_x", "LAST", ""]), "output": TEXT},
    ),
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "developer", "tool"])},
        optional={"type": st.just("message"), "content": st.one_of(TEXT, JSON_VALUE)},
    ),
    JSON_VALUE.filter(lambda value: isinstance(value, dict)),
)
LIVE_CLIENT_EVENTS = st.one_of(
    _event(
        "session.start",
        session=st.fixed_dictionaries({}, optional=LIVE_SESSION_FIELDS),  # type: ignore[arg-type]
    ),
    _event(
        "session.update",
        session=st.fixed_dictionaries(
            {}, optional={"delegation": LIVE_DELEGATION, "triggers": st.lists(JSON_VALUE)}
        ),
    ),
    _event(
        "session.input_audio.append",
        audio=st.one_of(
            st.binary(max_size=2000).map(lambda b: base64.b64encode(b).decode()),
            st.sampled_from(["", "***", "AAA"]),
            NUMBER,
        ),
    ),
    _event("session.input_audio.mute"),
    _event("session.input_audio.unmute"),
    *(
        _event(f"session.{kind}.append", content=TEXT, delegation_id=DELEGATION_IDS)
        for kind in ("instructions", "thinking", "commentary")
    ),
    _event("response.item.create", item=RESPONSE_ITEM),
    _event("response.create"),
    _event("decision.create"),
    _event("session.output_audio.fixture.play", audio=TEXT),
    _event("input_audio_buffer.append", audio=TEXT),
    _event("nonsense.event", extra=JSON_VALUE),
)
LIVE_MESSAGES = st.one_of(
    LIVE_CLIENT_EVENTS.map(_dump),
    st.text(max_size=60),
    st.binary(max_size=60),
    st.integers(0, len(SPEECH) - 1).map(lambda i: SPEECH[i]),
    st.just("SPEAK"),
    st.sampled_from(["[" * 2000, '{"type":' * 200, "{}", "null"]),
)
LIVE_REPLY = st.lists(
    st.sampled_from(["reason", "answer", "speech", "call", "delegate", "finish", "fail"]),
    max_size=6,
)
TOOL_ADD = {"type": "function", "name": "add", "parameters": {"type": "object"}}
LIVE_START = {
    "type": "session.start",
    "session": {
        "model": "gpt-live-1",
        "delegation": {
            "type": "responses",
            "responses": {"model": "m", "tools": [TOOL_ADD], "reasoning": {"summary": "auto"}},
        },
    },
}


class LiveDriver(Driver):
    """A GPT-Live session driven as the connection drives it; every wire event checked."""

    def __init__(self) -> None:  # noqa: D107 - as Driver's, with the Live machine
        self.beta = False
        self.session = LiveSession(default_config(Settings(), VOICES), VOICES)  # type: ignore[assignment]
        self.clock = 0.0
        self.started: list[str] = []
        self.events: list[dict[str, Any]] = []
        self.delegation: str | None = None
        self.call: str | None = None
        self.take(self.session.start())

    def send_live(self, message: str | bytes) -> None:
        if isinstance(message, str):  # the ids only the session knows
            call = json.dumps(self.call or "none")
            message = message.replace('"call_id": "LAST"', f'"call_id": {call}')
            message = message.replace('"LAST"', json.dumps(self.delegation or "none"))
        self.send(message)

    def take(self, outputs: list[Any]) -> None:
        events = []
        for output in outputs:
            if isinstance(output, Rendered):
                if output.wire is not None:
                    events.append(output.wire)
            elif isinstance(output, dict):
                events.append(output)
        for event in events:
            STATS["events_out"] += 1
            assert event["type"] != "error" or event["error"]["code"] in LIVE_CODES, event
            check_live_parses(event)
            if event["type"] == "session.delegation.created":
                self.delegation = event["delegation"]["id"]
            inner = event.get("event") or {}
            if inner.get("type") == "response.output_item.done":
                self.call = inner["item"].get("call_id") or self.call
        self.events += events
        super().take([o for o in outputs if not isinstance(o, dict | Rendered)])

    def reply(self, steps: list[str]) -> None:
        if not self.started:
            return
        response_id = self.started[0]
        for step in steps:
            if step in ("call", "delegate"):
                name = "add" if step == "call" else DELEGATE_TOOL_NAME
                for event in (
                    ToolCallDelta(0, name, '{"a": 1'),
                    ToolCalled(0, ToolCall(name, '{"a": 1}')),
                ):
                    self.take(self.session.on_response_event(response_id, event))
                continue
            if step == "fail":
                self.started.remove(response_id)
                self.take(self.session.on_response_failed(response_id))
                return
            self.take(self.session.on_response_event(response_id, _responder_event(step)))
            if step == "finish":
                self.started.remove(response_id)
                return


def live_normal_turn(driver: LiveDriver) -> None:
    """After whatever came before: silence (a turn in progress ends), then commentary, said."""
    session = driver.session
    assert isinstance(session, LiveSession)
    if not session.started:
        driver.send(json.dumps(LIVE_START))
    assert session.started
    driver.send(json.dumps({"type": "session.input_audio.unmute"}))
    silence = base64.b64encode(bytes(960)).decode()
    for _ in range(75):  # 1.5 s: a turn in progress ends
        driver.send(json.dumps({"type": "session.input_audio.append", "audio": silence}))
    for response_id in list(driver.started):
        driver.take(session.on_response_failed(response_id))
        driver.started.remove(response_id)
    driver.events.clear()
    commentary = {"type": "session.commentary.append", "content": "Hi.", "delegation_id": None}
    driver.send(json.dumps(commentary))
    assert driver.started, [e for e in driver.events if e["type"] == "error"]
    driver.reply(["speech", "answer", "finish"])
    kinds = [e["type"] for e in driver.events]
    assert "session.output_audio.delta" in kinds and "session.usage.updated" in kinds, kinds


@FUZZ
@given(
    messages=st.lists(st.tuples(LIVE_MESSAGES, LIVE_REPLY), max_size=25),
    begin=st.sampled_from([True, True, True, False]),  # mostly started: events get further
)
def test_the_live_session_survives_any_sequence_of_messages(
    messages: list[tuple[str | bytes, list[str]]], begin: bool
) -> None:
    STATS["examples"] += 1
    driver = LiveDriver()
    if begin:
        driver.send(json.dumps(LIVE_START))
    for message, reply in messages:
        if message == "SPEAK":
            for append in SPEECH:
                driver.send(_live_append(append))
        elif message in SPEECH:
            driver.send(_live_append(message))
        else:
            driver.send_live(message)
        driver.reply(reply)
    live_normal_turn(driver)
    _report()


def _live_append(realtime_append: str) -> str:
    return realtime_append.replace('"input_audio_buffer.append"', '"session.input_audio.append"')
