"""The session state machine without sockets: client events in, server events and actions out.

Every server event is checked against the official `openai` SDK's own pydantic types (GA, or
beta for a beta session), so the SDK parses whatever we send.
"""

from __future__ import annotations

import base64
import json
import typing
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from openai.types.beta.realtime.realtime_server_event import (
    RealtimeServerEvent as BetaServerEvent,
)
from openai.types.realtime.realtime_server_event import RealtimeServerEvent

from server.protocol import (
    CancelResponse,
    Close,
    ConfirmResponse,
    ErrorCode,
    Limits,
    Session,
    SessionConfig,
    StartResponse,
    Transcribe,
    TurnsMerged,
)
from server.protocol.audio import PCM_16K, PCMA, PCMU, AudioFormat, encode_samples
from streaming.responder import ResponseEvent, ResponseFinished, SpeechChunk
from streaming.turns.detection import ServerVad
from tests.server.espeak_responder import DEFAULT_REASONING, DEFAULT_REPLY, FixedReplyResponder
from tests.support.speech import BARGE_IN_LEAD_MS, appends, spoken

EXTENSION_EVENTS = {"response.reasoning_text.delta", "response.reasoning_text.done"}
# the beta SDK types predate these two; GA has them
NOT_IN_BETA_SDK = {"conversation.item.retrieved", "output_audio_buffer.cleared"}
VOICES = ["en-us", "en-gb"]


class Harness:
    """A session and everything it said, like h11's test connections."""

    def __init__(
        self,
        beta: bool = False,
        turn_detection: ServerVad | None = None,
        limits: Limits | None = None,
        speculate_after_ms: int | None = None,
    ) -> None:
        config = SessionConfig(voice="en-us", turn_detection=turn_detection)
        self.session = Session(
            config, VOICES, beta=beta, limits=limits, speculate_after_ms=speculate_after_ms
        )
        self.beta = beta
        self.events: list[dict[str, Any]] = []
        self.actions: list[Any] = []
        self.clock = 0.0
        self._take(self.session.start())

    def _take(self, outputs: list[Any]) -> list[dict[str, Any]]:
        events = [o for o in outputs if isinstance(o, dict)]
        self.actions += [o for o in outputs if not isinstance(o, dict)]
        for event in events:
            check_sdk_parses(event, self.beta)
        self.events += events
        return events

    def send(self, event: dict[str, Any] | str | bytes) -> list[dict[str, Any]]:
        self.clock += 0.02
        message = event if isinstance(event, str | bytes) else json.dumps(event)
        return self._take(self.session.receive(message, self.clock))

    def send_all(self, messages: list[str]) -> list[dict[str, Any]]:
        return [event for message in messages for event in self.send(message)]

    def feed(self, response_id: str, event: ResponseEvent) -> list[dict[str, Any]]:
        return self._take(self.session.on_response_event(response_id, event))

    def send_until(self, messages: list[str], done: Callable[[], bool]) -> list[str]:
        """Send messages until `done()`; returns the ones not sent."""
        for index, message in enumerate(messages):
            self.send(message)
            if done():
                return messages[index + 1 :]
        raise AssertionError("the condition never came true")

    def last_start(self) -> StartResponse:
        starts = [a for a in self.actions if isinstance(a, StartResponse)]
        assert starts, "no response was started"
        return starts[-1]

    async def play(self, responder: FixedReplyResponder, limit: int | None = None) -> list[dict]:
        """Run the last started response through `responder` (the first `limit` events)."""
        action = self.last_start()
        stream = responder.respond(action.request)
        events: list[dict[str, Any]] = []
        count = 0
        async for event in stream:
            events += self.feed(action.response_id, event)
            count += 1
            if limit is not None and count >= limit:
                break
        await stream.aclose()
        return events

    def text_turn(self, text: str = "what is seven times six") -> None:
        self.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": text}],
                },
            }
        )


def _by_type(union: Any) -> dict[str, Any]:
    members = typing.get_args(typing.get_args(union)[0])
    return {typing.get_args(m.model_fields["type"].annotation)[0]: m for m in members}


GA_EVENTS = _by_type(RealtimeServerEvent)
BETA_EVENTS = _by_type(BetaServerEvent)


def check_sdk_parses(event: dict[str, Any], beta: bool) -> None:
    """Strict validation against the SDK's model for this event type (the SDK itself parses
    leniently, so this is the stronger check)."""
    if event["type"] in EXTENSION_EVENTS or (beta and event["type"] in NOT_IN_BETA_SDK):
        return
    if beta and "session" in event:  # the beta types list OpenAI's model names only
        event = {**event, "session": {**event["session"], "model": "gpt-realtime"}}
    # our extensions: PCM at 16 kHz (the SDK's type allows only 24000), and the reasoning
    # stream as an `include` entry (echoed to the clients that ask for it)
    text = json.dumps(event).replace('"rate": 16000', '"rate": 24000')
    text = text.replace('"include": ["response.reasoning_text"]', '"include": null')
    event = json.loads(text)
    model = (BETA_EVENTS if beta else GA_EVENTS)[event["type"]]
    model.model_validate(event)


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def errors(events: list[dict[str, Any]]) -> list[str]:
    return [e["error"]["code"] for e in events if e["type"] == "error"]


async def complete_turn(h: Harness) -> list[dict[str, Any]]:
    """A normal text turn, start to response.done; proves the session still works."""
    h.text_turn()
    h.send({"type": "response.create"})
    events = await h.play(FixedReplyResponder())
    assert events[-1]["type"] == "response.done"
    assert events[-1]["response"]["status"] == "completed"
    return events


# --- session -------------------------------------------------------------------------------


def test_session_created_ga_and_beta() -> None:
    ga = Harness().events[0]
    assert ga["type"] == "session.created" and ga["session"]["type"] == "realtime"
    assert ga["session"]["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    beta = Harness(beta=True).events[0]
    assert beta["session"]["input_audio_format"] == "pcm16"


def test_session_update_ga_shape() -> None:
    h = Harness()
    [updated] = h.send(
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "instructions": "Be brief.",
                "output_modalities": ["text"],
                "reasoning": {"effort": "low"},
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcmu"},
                        "turn_detection": {"type": "server_vad", "silence_duration_ms": 300},
                    },
                    "output": {"format": {"type": "audio/pcma"}, "voice": "en-gb"},
                },
            },
        }
    )
    session = updated["session"]
    assert updated["type"] == "session.updated"
    assert session["instructions"] == "Be brief." and session["output_modalities"] == ["text"]
    assert session["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert session["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 300
    assert session["audio"]["output"] == {
        "format": {"type": "audio/pcma"},
        "voice": "en-gb",
        "speed": 1.0,
    }
    assert session["reasoning"] == {"effort": "low"}


def test_session_update_beta_shape_and_null_turn_detection() -> None:
    h = Harness(beta=True, turn_detection=ServerVad())
    [updated] = h.send(
        {
            "type": "session.update",
            "session": {
                "modalities": ["text", "audio"],
                "input_audio_format": "g711_ulaw",
                "voice": "en-gb",
                "turn_detection": None,
            },
        }
    )
    assert updated["session"]["input_audio_format"] == "g711_ulaw"
    assert updated["session"]["turn_detection"] is None
    assert h.session.config.turn_detection is None


@pytest.mark.parametrize(
    ("session", "code"),
    [
        ({"voice": "alloy"}, ErrorCode.INVALID_VALUE),
        (
            {"audio": {"input": {"turn_detection": {"type": "semantic_vad", "threshold": 0.5}}}},
            ErrorCode.UNKNOWN_PARAMETER,
        ),
        ({"reasoning": {"effort": "extreme"}}, ErrorCode.INVALID_VALUE),
        ({"tools": [{"type": "function", "name": "two words"}]}, ErrorCode.INVALID_VALUE),
        ({"tools": [{"type": "mcp", "server_label": "x"}]}, ErrorCode.INVALID_VALUE),
        ({"include": ["everything"]}, ErrorCode.INVALID_VALUE),
        ({"instructions": "x" * 70_000}, ErrorCode.INVALID_VALUE),
        (
            {"truncation": {"type": "retention_ratio", "retention_ratio": 2}},
            ErrorCode.INVALID_VALUE,
        ),
        ({"noise_reduction_typo": 1}, ErrorCode.UNKNOWN_PARAMETER),
    ],
)
def test_session_update_rejects_what_it_cannot_honour(session: dict, code: ErrorCode) -> None:
    h = Harness()
    before = h.session.config
    events = h.send({"type": "session.update", "event_id": "evt_1", "session": session})
    assert errors(events) == [code]
    assert events[0]["error"]["event_id"] == "evt_1"
    assert types(events)[-1] == "session.updated"  # what is in force, unchanged
    assert h.session.config == before


def test_one_bad_field_is_refused_alone_and_the_rest_applies() -> None:
    h = Harness()
    events = h.send(
        {
            "type": "session.update",
            "session": {
                "instructions": "You are a calculator.",
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcm", "rate": 44_100},
                        "turn_detection": {"type": "semantic_vad", "eagerness": "high"},
                        "transcription": {"model": "whisper-1"},
                        "noise_reduction": {"type": "near_field"},
                    },
                    "output": {"voice": "no-such-voice", "speed": 1.2},
                },
                "tools": [
                    {
                        "type": "function",
                        "name": "calculate",
                        "parameters": {
                            "type": "object",
                            "properties": {"expression": {"type": "string"}},
                        },
                    }
                ],
                "tool_choice": "auto",
                "include": ["response.reasoning_text"],
                "truncation": "disabled",
            },
        }
    )
    assert sorted(errors(events)) == sorted(
        [ErrorCode.UNSUPPORTED_AUDIO_FORMAT, ErrorCode.INVALID_VALUE]
    )
    session = events[-1]["session"]
    assert session["instructions"] == "You are a calculator."
    assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24_000}
    assert session["audio"]["input"]["turn_detection"] == {
        "type": "semantic_vad", "eagerness": "high", "create_response": True,
        "interrupt_response": True, "merge_window_ms": 1000,
    }  # fmt: skip
    assert session["audio"]["input"]["transcription"] == {"model": "whisper-1"}
    assert session["audio"]["input"]["noise_reduction"] is None  # none is done: none is echoed
    assert (
        session["audio"]["output"]["voice"] == "en-us"
        and session["audio"]["output"]["speed"] == 1.2
    )
    assert [tool["name"] for tool in session["tools"]] == ["calculate"]
    assert session["include"] == ["response.reasoning_text"]
    assert session["truncation"] == "disabled"


def test_session_created_reports_the_effort_in_force() -> None:
    h = Harness()
    created = h.session.start()[0]
    assert created["session"]["reasoning"] == {"effort": "medium"}


# --- responses -----------------------------------------------------------------------------


async def test_text_turn_full_output_sequence() -> None:
    h = Harness()
    h.send({"type": "session.update", "session": {"include": ["response.reasoning_text"]}})
    h.text_turn()
    created = h.send({"type": "response.create"})
    assert types(created) == ["response.created"]  # its items come as the model writes them
    request = h.last_start().request
    assert request.turns[-1].text == "what is seven times six" and request.speak
    events = await h.play(FixedReplyResponder())
    kinds = types(events)
    first_answer = kinds.index("response.output_item.added")
    assert kinds[first_answer : first_answer + 4] == [
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
        "response.output_audio_transcript.delta",
    ]
    assert kinds.index("response.reasoning_text.delta") < first_answer
    assert kinds[-7:] == [
        "response.reasoning_text.done",
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    reasoning = "".join(e["delta"] for e in events if e["type"] == "response.reasoning_text.delta")
    assert reasoning.strip() == DEFAULT_REASONING
    transcript = "".join(
        e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta"
    )
    assert transcript == DEFAULT_REPLY
    assert DEFAULT_REASONING not in transcript  # reasoning is shown, never spoken
    audio = b"".join(
        base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta"
    )
    assert len(audio) > 24_000 * 2  # over a second of 24 kHz PCM16
    done = events[-1]["response"]
    assert done["status"] == "completed"
    assert done["output"][0]["content"][0] == {"type": "output_audio", "transcript": DEFAULT_REPLY}
    assert done["usage"]["output_tokens"] > 0


async def test_response_overrides_text_only_instructions_voice() -> None:
    h = Harness()
    h.text_turn()
    h.send(
        {
            "type": "response.create",
            "response": {
                "output_modalities": ["text"],
                "instructions": "Answer in one word.",
                "audio": {"output": {"voice": "en-gb"}},
                "reasoning": {"effort": "minimal"},
            },
        }
    )
    action = h.last_start()
    assert action.request.speak is False
    assert action.request.instructions == "Answer in one word."
    assert action.request.voice == "en-gb"
    assert action.request.reasoning_effort == "minimal" and action.mode == "minimal"
    events = await h.play(FixedReplyResponder())
    kinds = set(types(events))
    assert "response.output_text.delta" in kinds and "response.output_text.done" in kinds
    assert not kinds & {"response.output_audio.delta", "response.output_audio_transcript.delta"}
    # the session default is untouched
    assert h.session.config.output_modalities == ("audio",)


async def test_beta_client_gets_beta_names() -> None:
    h = Harness(beta=True)
    h.text_turn()
    h.send({"type": "response.create", "response": {"modalities": ["text", "audio"]}})
    events = await h.play(FixedReplyResponder())
    kinds = set(types(h.events))
    assert {
        "response.audio.delta",
        "response.audio_transcript.delta",
        "response.audio.done",
        "conversation.item.created",
    } <= kinds
    assert not {k for k in kinds if "output_audio" in k or k == "conversation.item.added"}
    assert events[-1]["response"]["modalities"] == ["text", "audio"]
    h.send({"type": "response.create", "response": {"modalities": ["text"]}})
    text_events = await h.play(FixedReplyResponder())
    assert "response.text.delta" in types(text_events)


async def test_responder_failure_ends_response_failed_and_session_goes_on() -> None:
    h = Harness()
    h.text_turn()
    h.send({"type": "response.create"})
    action = h.last_start()
    events = h._take(h.session.on_response_failed(action.response_id))
    assert events[-2]["response"]["status"] == "failed"
    assert errors(events) == [ErrorCode.SERVER_ERROR]
    assert "Traceback" not in events[-1]["error"]["message"]
    await complete_turn(h)


# --- audio turns ---------------------------------------------------------------------------


async def test_server_vad_turn_commits_and_responds() -> None:
    h = Harness(turn_detection=ServerVad(silence_duration_ms=500))
    events = h.send_all(appends(spoken("what is seven times six", lead_ms=500)))
    kinds = types(events)
    assert kinds[:6] == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        "response.created",
    ]
    started, stopped, committed = events[:3]
    assert started["item_id"] == stopped["item_id"] == committed["item_id"]
    assert 0 <= started["audio_start_ms"] < 500 < stopped["audio_end_ms"]
    action = h.last_start()
    audio = action.request.turns[-1].audio
    assert audio is not None and audio.dtype == np.float32
    expected_s = (stopped["audio_end_ms"] - started["audio_start_ms"]) / 1000
    assert len(audio) / 16_000 == pytest.approx(expected_s, abs=0.05)
    assert action.speech_end_at is not None and action.committed_at >= action.speech_end_at


async def test_manual_commit_when_turn_detection_is_null() -> None:
    h = Harness(turn_detection=None)
    events = h.send_all(appends(spoken("six", lead_ms=100, tail_ms=100)))
    assert events == []  # no VAD events, no response
    committed = h.send({"type": "input_audio_buffer.commit"})
    assert types(committed) == [
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
    ]
    assert not any(isinstance(a, StartResponse) for a in h.actions)
    h.send({"type": "response.create"})
    assert h.last_start().request.turns[-1].audio is not None
    assert h.last_start().speech_end_at is None


@pytest.mark.parametrize(
    ("session", "fmt"),
    [
        ({"input_audio_format": "g711_ulaw"}, PCMU),  # beta shape, accepted from a GA client
        ({"input_audio_format": "g711_alaw"}, PCMA),
        ({"audio": {"input": {"format": {"type": "audio/pcma"}}}}, PCMA),
        ({"audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}}, PCM_16K),
    ],
)
async def test_every_input_format_reaches_turn_detection(session: dict, fmt: AudioFormat) -> None:
    h = Harness(turn_detection=ServerVad())
    h.send({"type": "session.update", "session": session})
    assert h.session.config.input_format == fmt
    wire = encode_samples(fmt, spoken("what is seven times six", rate=fmt.sample_rate))
    step = fmt.sample_rate * fmt.bytes_per_sample // 50  # 20 ms
    for i in range(0, len(wire), step):
        piece = base64.b64encode(wire[i : i + step]).decode()
        h.send({"type": "input_audio_buffer.append", "audio": piece})
    assert "input_audio_buffer.speech_stopped" in types(h.events)
    duration_s = len(h.last_start().request.turns[-1].audio) / 16_000
    assert 1.0 < duration_s < len(wire) / fmt.bytes_per_sample / fmt.sample_rate


# --- speculation ---------------------------------------------------------------------------


def _speculative(h: Harness) -> list[StartResponse]:
    return [a for a in h.actions if isinstance(a, StartResponse) and a.speculative]


async def test_speculation_runs_in_the_pause_and_goes_out_at_commit() -> None:
    h = Harness(turn_detection=ServerVad(silence_duration_ms=800), speculate_after_ms=200)
    messages = appends(spoken("what is seven times six", lead_ms=300, tail_ms=1200))
    rest = h.send_until(messages, lambda: bool(_speculative(h)))
    [guess] = _speculative(h)
    assert not any(e["type"].startswith("response.") for e in h.events)  # nothing said yet
    assert guess.request.turns[-1].audio is not None
    assert await h.play(FixedReplyResponder()) == []  # held back while the turn is open
    events = h.send_all(rest)
    kinds = types(events)
    assert kinds[:6] == [
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        "response.created",
        "response.output_item.added",
    ]
    assert kinds[-1] == "response.done" and events[-1]["response"]["id"] == guess.response_id
    assert "response.output_audio.delta" in kinds
    [confirm] = [a for a in h.actions if isinstance(a, ConfirmResponse)]
    assert confirm.response_id == guess.response_id and confirm.speech_end_at is not None
    committed_id = events[1]["item_id"]
    assert guess.request.turns[-1].item_id == committed_id


async def test_speculation_is_discarded_when_speech_resumes() -> None:
    h = Harness(turn_detection=ServerVad(silence_duration_ms=900), speculate_after_ms=200)
    word = spoken("seven", lead_ms=0, tail_ms=0)
    pause = np.zeros(24_000 * 450 // 1000, np.int16)  # long enough to guess, too short to end
    audio = np.concatenate(
        [np.zeros(7200, np.int16), word, pause, word, np.zeros(36_000, np.int16)]
    )
    h.send_all(appends(audio))
    guesses = _speculative(h)
    assert len(guesses) >= 2
    discarded = [a for a in h.actions if isinstance(a, CancelResponse)]
    assert CancelResponse(guesses[0].response_id, "speculation_discarded") in discarded
    assert h.feed(guesses[0].response_id, ResponseFinished()) == []  # never heard of
    [confirm] = [a for a in h.actions if isinstance(a, ConfirmResponse)]
    assert confirm.response_id == guesses[-1].response_id
    assert types(h.events).count("response.created") == 1


async def test_speculation_is_discarded_when_the_client_changes_the_conversation() -> None:
    h = Harness(turn_detection=ServerVad(silence_duration_ms=800), speculate_after_ms=200)
    messages = appends(spoken("what is seven times six", lead_ms=300, tail_ms=1200))
    rest = h.send_until(messages, lambda: bool(_speculative(h)))
    [guess] = _speculative(h)
    h.text_turn("and also this")
    assert CancelResponse(guess.response_id, "speculation_discarded") in h.actions
    h.send_all(rest)
    assert h.last_start().response_id != guess.response_id  # started afresh at commit
    assert h.last_start().request.turns[-2].text == "and also this"


# --- barge-in and truncation ---------------------------------------------------------------


async def test_barge_in_cancels_the_response() -> None:
    h = Harness(turn_detection=ServerVad())
    h.send_all(appends(spoken("what is seven times six")))
    first = h.last_start()
    responder = FixedReplyResponder()
    await h.play(responder, limit=len(DEFAULT_REASONING.split()) + 3)  # some speech out
    assert responder.closed_early == 1  # the generator was closed: engine and TTS stop
    barge = h.send_all(appends(spoken("stop", lead_ms=BARGE_IN_LEAD_MS, tail_ms=0)))
    cancels = [a for a in h.actions if isinstance(a, CancelResponse)]
    assert cancels == [CancelResponse(first.response_id, "turn_detected")]
    done = next(e for e in barge if e["type"] == "response.done")
    assert done["response"]["status"] == "cancelled"
    assert done["response"]["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
    assert done["response"]["output"][0]["status"] == "incomplete"
    # late events of the cancelled response are ignored
    assert h.feed(first.response_id, ResponseFinished()) == []


async def test_a_cancel_that_races_the_barge_in_gets_openais_benign_error() -> None:
    # livekit's race (tests/frameworks): the server's speech_started ends the response while
    # the client, still playing it, sends response.cancel. OpenAI's code and wording, which
    # the clients treat as benign (livekit-agents matches the "Cancellation failed" prefix).
    h = Harness(turn_detection=ServerVad())
    h.send_all(appends(spoken("what is seven times six")))
    await h.play(FixedReplyResponder(), limit=len(DEFAULT_REASONING.split()) + 3)
    h.send_all(appends(spoken("stop", lead_ms=BARGE_IN_LEAD_MS, tail_ms=0)))
    assert h.session.response is None  # ended by the barge-in
    events = h.send({"type": "response.cancel", "event_id": "evt_late_cancel"})
    assert errors(events) == [ErrorCode.NO_ACTIVE_RESPONSE]
    [error] = [event["error"] for event in events if event["type"] == "error"]
    assert error["message"] == "Cancellation failed: no active response found"
    assert error["event_id"] == "evt_late_cancel"
    await complete_turn(h)  # and the session goes on


async def test_no_barge_in_when_interrupt_response_is_false() -> None:
    h = Harness(turn_detection=ServerVad(interrupt_response=False))
    h.send_all(appends(spoken("what is seven times six")))
    h.send_all(appends(spoken("stop", lead_ms=BARGE_IN_LEAD_MS, tail_ms=0)))
    assert not any(isinstance(a, CancelResponse) for a in h.actions)
    assert h.session.response is not None


async def test_truncate_cuts_transcript_to_words_played() -> None:
    h = Harness()
    h.text_turn()
    h.send({"type": "response.create"})
    await h.play(FixedReplyResponder())
    item = h.session.items[-1]
    words = item.words
    third = words[2]  # "is" in "Seven times six is ..."
    cut_ms = int(third.end_ms) + 1
    [truncated] = h.send(
        {
            "type": "conversation.item.truncate",
            "item_id": item.id,
            "content_index": 0,
            "audio_end_ms": cut_ms,
        }
    )
    assert truncated == {**truncated, "type": "conversation.item.truncated", "audio_end_ms": cut_ms}
    assert item.text == DEFAULT_REPLY[: third.end_char] == "Seven times six"
    assert item.audio_ms == cut_ms
    h.send({"type": "response.create"})
    assert h.last_start().request.turns[-1].text == "Seven times six"  # history as heard


async def test_truncate_during_response_clamps_to_audio_sent() -> None:
    h = Harness()
    h.text_turn()
    h.send({"type": "response.create"})
    action = h.last_start()
    await h.play(FixedReplyResponder(), limit=len(DEFAULT_REASONING.split()) + 2)
    item = h.session.items[-1]
    sent_ms = item.audio_ms
    assert 0 < sent_ms < 1000
    events = h.send(
        {
            "type": "conversation.item.truncate",
            "item_id": item.id,
            "content_index": 0,
            "audio_end_ms": 60_000,
        }
    )
    assert [a for a in h.actions if isinstance(a, CancelResponse)] == [
        CancelResponse(action.response_id, "client_cancelled")
    ]
    assert events[-1]["type"] == "conversation.item.truncated"
    assert events[-1]["audio_end_ms"] == sent_ms


async def test_output_audio_buffer_clear_stops_the_response() -> None:
    h = Harness()
    h.text_turn()
    h.send({"type": "response.create"})
    events = h.send({"type": "output_audio_buffer.clear"})
    assert types(events)[-2:] == ["response.done", "output_audio_buffer.cleared"]
    assert events[-2]["response"]["status"] == "cancelled"


async def test_idle_timeout_triggers_a_response() -> None:
    h = Harness(turn_detection=ServerVad(idle_timeout_ms=1000))
    h.text_turn()
    h.send({"type": "response.create"})
    await h.play(FixedReplyResponder())
    silence = np.zeros(24_000 * 8, np.int16)  # longer than the reply's playback + timeout
    events = h.send_all(appends(silence))
    kinds = types(events)
    assert kinds.count("input_audio_buffer.timeout_triggered") == 1
    timeout = events[kinds.index("input_audio_buffer.timeout_triggered")]
    assert timeout["audio_end_ms"] - timeout["audio_start_ms"] >= 1000
    assert "response.created" in kinds[kinds.index("input_audio_buffer.timeout_triggered") :]


# --- conversation items --------------------------------------------------------------------


def test_items_create_retrieve_delete_with_positions() -> None:
    h = Harness()
    h.text_turn("first")
    first = h.session.items[0].id
    [added, _] = h.send(
        {
            "type": "conversation.item.create",
            "previous_item_id": "root",
            "item": {
                "type": "message",
                "role": "system",
                "content": [{"type": "input_text", "text": "You are terse."}],
            },
        }
    )
    assert added["previous_item_id"] is None
    assert [i.role for i in h.session.items] == ["system", "user"]
    pcm = spoken("six", lead_ms=0, tail_ms=0)
    h.send(
        {
            "type": "conversation.item.create",
            "previous_item_id": first,
            "item": {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_audio", "audio": base64.b64encode(pcm.tobytes()).decode()}
                ],
            },
        }
    )
    audio_item = h.session.items[2]
    [retrieved] = h.send({"type": "conversation.item.retrieve", "item_id": audio_item.id})
    assert retrieved["type"] == "conversation.item.retrieved"
    assert base64.b64decode(retrieved["item"]["content"][0]["audio"])
    [deleted] = h.send({"type": "conversation.item.delete", "item_id": first})
    assert deleted == {**deleted, "type": "conversation.item.deleted", "item_id": first}
    h.send({"type": "response.create"})
    roles = [t.role for t in h.last_start().request.turns]
    assert roles == ["system", "user"]


# --- bad input: every class gets its code, and the session goes on -------------------------

BIG = Limits(max_message_bytes=2_000, max_input_buffer_ms=500)


def _setup_nothing(h: Harness) -> None:
    pass


def _setup_assistant_item(h: Harness) -> None:
    h.send(
        {
            "type": "conversation.item.create",
            "item": {
                "id": "item_said",
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_audio", "transcript": "hello"}],
            },
        }
    )


def _setup_active_response(h: Harness) -> None:
    h.text_turn()
    h.send({"type": "response.create"})


def _setup_closed(h: Harness) -> None:
    outputs = h.session.close(ErrorCode.SESSION_EXPIRED, "time is up")
    assert any(isinstance(o, Close) for o in outputs)


def _pcm_b64(ms: int) -> str:
    return base64.b64encode(np.zeros(24 * ms, "<i2").tobytes()).decode()


BAD_INPUTS = [
    ("malformed_json", _setup_nothing, '{"type": "response.create", ', ErrorCode.INVALID_JSON),
    ("not_an_object", _setup_nothing, "[1, 2]", ErrorCode.INVALID_JSON),
    ("binary_not_utf8", _setup_nothing, b"\xff\xfe\x00", ErrorCode.INVALID_JSON),
    ("missing_type", _setup_nothing, {"event_id": "e"}, ErrorCode.MISSING_EVENT_TYPE),
    ("unknown_type", _setup_nothing, {"type": "response.explode"}, ErrorCode.UNKNOWN_EVENT_TYPE),
    (
        "missing_field",
        _setup_nothing,
        {"type": "input_audio_buffer.append"},
        ErrorCode.MISSING_REQUIRED_PARAMETER,
    ),
    (
        "wrong_type",
        _setup_assistant_item,
        {
            "type": "conversation.item.truncate",
            "item_id": "item_said",
            "content_index": 0,
            "audio_end_ms": "ten",
        },
        ErrorCode.INVALID_VALUE,
    ),
    (
        "unknown_field",
        _setup_nothing,
        {"type": "response.cancel", "force": True},
        ErrorCode.UNKNOWN_PARAMETER,
    ),
    (
        "bad_base64",
        _setup_nothing,
        {"type": "input_audio_buffer.append", "audio": "abc$"},
        ErrorCode.INVALID_BASE64,
    ),
    (
        "unsupported_format",
        _setup_nothing,
        {
            "type": "session.update",
            "session": {"audio": {"input": {"format": {"type": "audio/pcm", "rate": 44100}}}},
        },
        ErrorCode.UNSUPPORTED_AUDIO_FORMAT,
    ),
    (
        "message_too_large",
        _setup_nothing,
        {"type": "input_audio_buffer.append", "audio": _pcm_b64(100)},
        ErrorCode.MESSAGE_TOO_LARGE,
    ),
    (
        "buffer_full",
        lambda h: h.send({"type": "input_audio_buffer.append", "audio": _pcm_b64(100)}),
        {"type": "input_audio_buffer.append", "audio": _pcm_b64(100)},
        None,
    ),
    (
        "commit_empty",
        _setup_nothing,
        {"type": "input_audio_buffer.commit"},
        ErrorCode.INPUT_AUDIO_BUFFER_COMMIT_EMPTY,
    ),
    (
        "truncate_past_end",
        _setup_assistant_item,
        {
            "type": "conversation.item.truncate",
            "item_id": "item_said",
            "content_index": 0,
            "audio_end_ms": 100,
        },
        ErrorCode.TRUNCATE_PAST_END,
    ),
    (
        "unknown_item_retrieve",
        _setup_nothing,
        {"type": "conversation.item.retrieve", "item_id": "nope"},
        ErrorCode.ITEM_RETRIEVE_INVALID_ITEM_ID,
    ),
    (
        "unknown_item_delete",
        _setup_nothing,
        {"type": "conversation.item.delete", "item_id": "nope"},
        ErrorCode.ITEM_DELETE_INVALID_ITEM_ID,
    ),
    (
        "unknown_item_truncate",
        _setup_nothing,
        {
            "type": "conversation.item.truncate",
            "item_id": "nope",
            "content_index": 0,
            "audio_end_ms": 0,
        },
        ErrorCode.ITEM_TRUNCATE_INVALID_ITEM_ID,
    ),
    (
        "duplicate_item_id",
        _setup_assistant_item,
        {
            "type": "conversation.item.create",
            "item": {
                "id": "item_said",
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "again"}],
            },
        },
        ErrorCode.ITEM_CREATE_DUPLICATE_ITEM_ID,
    ),
    (
        "unknown_previous_item",
        _setup_nothing,
        {
            "type": "conversation.item.create",
            "previous_item_id": "nope",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "hi"}],
            },
        },
        ErrorCode.ITEM_CREATE_INVALID_PREVIOUS_ITEM_ID,
    ),
    (
        "output_for_unknown_call",
        _setup_nothing,
        {
            "type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": "call_nope", "output": "42"},
        },
        ErrorCode.UNKNOWN_CALL_ID,
    ),
    (
        "non_positive_max_output_tokens",
        _setup_nothing,
        {"type": "response.create", "response": {"max_output_tokens": 0}},
        ErrorCode.INVALID_VALUE,
    ),
    (
        "negative_max_output_tokens_as_text",
        _setup_nothing,
        {"type": "response.create", "response": {"max_output_tokens": "-1"}},
        ErrorCode.INVALID_VALUE,
    ),
    (
        "bad_tool_schema",
        _setup_nothing,
        {
            "type": "session.update",
            "session": {"tools": [{"type": "function", "name": "no spaces"}]},
        },
        ErrorCode.INVALID_VALUE,
    ),
    (
        "response_while_active",
        _setup_active_response,
        {"type": "response.create"},
        ErrorCode.ACTIVE_RESPONSE,
    ),
    (
        "cancel_without_response",
        _setup_nothing,
        {"type": "response.cancel"},
        ErrorCode.NO_ACTIVE_RESPONSE,
    ),
    ("after_close", _setup_closed, {"type": "response.create"}, ErrorCode.SESSION_CLOSED),
]


@pytest.mark.parametrize(
    ("setup", "message", "code"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
async def test_bad_input_gets_error_and_session_goes_on(setup, message, code) -> None:
    limits = BIG
    if code is None:  # the buffer case: a limit the setup's append leaves no room under
        code, limits = ErrorCode.INPUT_AUDIO_BUFFER_FULL, Limits(max_input_buffer_ms=150)
    h = Harness(limits=limits)
    setup(h)
    if isinstance(message, dict):
        message = {"event_id": "evt_bad", **message} if "event_id" not in message else message
        message = json.dumps(message)
    events = h.send(message)
    assert errors(events) == [code]
    error = next(event for event in events if event["type"] == "error")["error"]
    assert error["message"] and error["type"] == "invalid_request_error"
    if '"event_id": "evt_bad"' in (message if isinstance(message, str) else ""):
        assert error["event_id"] == "evt_bad"
    if code == ErrorCode.SESSION_CLOSED:
        return  # a closed session refuses everything, by design
    if code == ErrorCode.ACTIVE_RESPONSE:
        await h.play(FixedReplyResponder())  # the active one is unharmed and completes
    await complete_turn(h)


def test_speech_chunk_for_unknown_response_is_ignored() -> None:
    h = Harness()
    assert h.feed("resp_unknown", SpeechChunk.__new__(SpeechChunk)) == []


# --- a turn closed too early is merged with the speech that follows ------------------------


def _paused_question(h: Harness, pause_ms: int, play_events: int) -> dict[str, Any]:
    """ "what is nineteen" (closed by a 300 ms silence window), its reply played for
    `play_events` responder events, then "minus eight" after `pause_ms` of pause in all."""
    messages = appends(spoken("what is nineteen", tail_ms=pause_ms))
    rest = h.send_until(messages, lambda: any(isinstance(a, StartResponse) for a in h.actions))
    return {"first": h.last_start(), "rest": rest, "play_events": play_events}


async def _finish_question(h: Harness, state: dict[str, Any]) -> list[dict[str, Any]]:
    """Play the reply, send the rest of the pause, note the conversation, then go on."""
    await h.play(FixedReplyResponder(), limit=state["play_events"])
    h.send_all(state["rest"])
    roles = {item.role: item.id for item in h.session.items}
    state["user"], state["reply"] = roles["user"], roles.get("assistant")
    return h.send_all(appends(spoken("minus eight", lead_ms=0, tail_ms=800)))


async def test_speech_right_after_a_commit_merges_the_turns_and_withdraws_the_reply() -> None:
    h = Harness(turn_detection=ServerVad(silence_duration_ms=300))
    state = _paused_question(h, pause_ms=700, play_events=len(DEFAULT_REASONING.split()) + 4)
    events = await _finish_question(h, state)
    user, reply = state["user"], state["reply"]
    assert reply is not None  # some of the wrong answer went out before the user went on
    order = [e["type"] for e in events if e["type"] != "response.output_audio.delta"]
    started = order.index("input_audio_buffer.speech_started")
    done = order.index("response.done")
    deleted = [e["item_id"] for e in events if e["type"] == "conversation.item.deleted"]
    committed = order.index("input_audio_buffer.committed")
    assert started < done < order.index("conversation.item.deleted") < committed
    assert deleted == [reply, user]
    [cancelled] = [e["response"] for e in events if e["type"] == "response.done"]
    assert cancelled["id"] == state["first"].response_id
    assert cancelled["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
    # one user item holds the whole utterance; one reply answers it
    [item] = h.session.items
    [speech_started] = [e for e in events if e["type"] == "input_audio_buffer.speech_started"]
    first_started = next(e for e in h.events if e["type"] == "input_audio_buffer.speech_started")
    assert speech_started["audio_start_ms"] == first_started["audio_start_ms"]
    assert item.role == "user" and item.audio is not None
    assert len(item.audio) / 16 > 1500  # both halves and the pause (16 kHz)
    [merged] = [a for a in h.actions if isinstance(a, TurnsMerged)]
    assert merged.detector == "server_vad" and 0 < merged.heard_ms <= 700
    cancels = [a.reason for a in h.actions if isinstance(a, CancelResponse)]
    assert cancels == ["turn_merged"]  # not a barge-in, for the metrics
    answer = h.last_start()
    assert answer.response_id != state["first"].response_id
    assert [turn.role for turn in answer.request.turns] == ["user"]
    assert h.session.response is not None and h.session.response.id == answer.response_id
    retrieved = h.send({"type": "conversation.item.retrieve", "item_id": user})
    assert errors(retrieved) == [ErrorCode.ITEM_RETRIEVE_INVALID_ITEM_ID]


async def test_a_merge_before_the_reply_spoke_withdraws_it_unheard() -> None:
    h = Harness(turn_detection=ServerVad(silence_duration_ms=300))
    state = _paused_question(h, pause_ms=500, play_events=2)  # reasoning only
    events = await _finish_question(h, state)
    assert state["reply"] is None
    deleted = [e["item_id"] for e in events if e["type"] == "conversation.item.deleted"]
    assert deleted == [state["user"]]
    [merged] = [a for a in h.actions if isinstance(a, TurnsMerged)]
    assert merged.heard_ms == 0
    assert [item.role for item in h.session.items] == ["user"]


async def test_a_withdrawn_turns_transcript_is_not_shown_and_the_merged_turn_gets_one() -> None:
    h = Harness(turn_detection=ServerVad(silence_duration_ms=300))
    h.send({"type": "session.update", "session": {
        "type": "realtime", "audio": {"input": {"transcription": {"model": "step-audio-asr"}}},
    }})  # fmt: skip
    state = _paused_question(h, pause_ms=700, play_events=2)
    await _finish_question(h, state)
    late = h.session.on_transcript_done(state["user"], "what is nineteen", {"seconds": 1})
    assert late == []
    transcribed = [a.item_id for a in h.actions if isinstance(a, Transcribe)]
    [item] = h.session.items
    assert transcribed == [state["user"], item.id]
    usage = {"type": "duration", "seconds": 2.0}
    shown = h._take(h.session.on_transcript_done(item.id, "what is nineteen minus eight", usage))
    assert types(shown) == ["conversation.item.input_audio_transcription.completed"]


async def test_speech_after_the_merge_window_is_a_barge_in() -> None:
    h = Harness(turn_detection=ServerVad(silence_duration_ms=300, merge_window_ms=600))
    state = _paused_question(h, pause_ms=1500, play_events=len(DEFAULT_REASONING.split()) + 4)
    events = await _finish_question(h, state)
    assert "conversation.item.deleted" not in types(events)
    assert not any(isinstance(a, TurnsMerged) for a in h.actions)
    assert [item.role for item in h.session.items] == ["user", "assistant", "user"]


async def test_a_client_change_to_the_conversation_seals_the_turn() -> None:
    h = Harness(turn_detection=ServerVad(silence_duration_ms=300))
    state = _paused_question(h, pause_ms=700, play_events=len(DEFAULT_REASONING.split()) + 4)
    h.text_turn("and another thing")
    events = await _finish_question(h, state)
    assert "conversation.item.deleted" not in types(events)
    assert not any(isinstance(a, TurnsMerged) for a in h.actions)


async def test_a_reply_speculation_wrote_whole_before_the_commit_is_withdrawn_too() -> None:
    h = Harness(turn_detection=ServerVad(silence_duration_ms=300), speculate_after_ms=60)
    state = _paused_question(h, pause_ms=700, play_events=10_000)
    assert h.last_start().speculative
    events = await _finish_question(h, state)  # the reply ends among the held events
    done = [e["response"]["id"] for e in h.events if e["type"] == "response.done"]
    assert done[0] == state["first"].response_id
    deleted = [e["item_id"] for e in events if e["type"] == "conversation.item.deleted"]
    assert state["reply"] is not None and deleted == [state["reply"], state["user"]]
    assert [item.role for item in h.session.items] == ["user"]


async def test_speech_after_the_reply_was_heard_is_a_barge_in_even_inside_the_window() -> None:
    # the reply's first audio goes out at the commit; 1100 ms of pause later it could have
    # played past MERGE_MAX_HEARD_MS, so the speech that follows interrupts it instead
    h = Harness(turn_detection=ServerVad(silence_duration_ms=300, merge_window_ms=2000))
    state = _paused_question(h, pause_ms=1100, play_events=len(DEFAULT_REASONING.split()) + 4)
    events = await _finish_question(h, state)
    assert "conversation.item.deleted" not in types(events)
    assert not any(isinstance(a, TurnsMerged) for a in h.actions)
    cancels = [a.reason for a in h.actions if isinstance(a, CancelResponse)]
    assert cancels == ["turn_detected"]  # a barge-in, counted as one
    assert [item.role for item in h.session.items] == ["user", "assistant", "user"]
