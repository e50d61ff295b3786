"""What voice-agent frameworks need of the session machine: function calls, user transcripts,
reasoning only on request, semantic turn detection, and a refused request told as such. Every
event is checked against the official SDK's types, as in test_session.py."""

from __future__ import annotations

import json

import numpy as np

from server.protocol import ErrorCode, JudgeTurnEnd, StartResponse, Transcribe
from server.protocol.actions import ConfirmResponse
from streaming.responder import (
    AnswerDelta,
    ReasoningDelta,
    ResponseFinished,
    ToolCallDelta,
    ToolCalled,
)
from streaming.tool_calls import ToolCall
from streaming.turns.detection import SemanticVad, ServerVad
from tests.server.espeak_responder import FixedReplyResponder
from tests.server.protocol.test_session import Harness, errors, types
from tests.support.presets import CALCULATE
from tests.support.speech import appends, spoken


def with_tools(h: Harness) -> None:
    h.send({"type": "session.update", "session": {"tools": [CALCULATE], "tool_choice": "auto"}})


def call_events(arguments: str = '{"expression":"7 * 6"}') -> list:
    half = len(arguments) // 2
    return [
        ReasoningDelta("I hear: seven times six. I will use the calculator."),
        ToolCallDelta(0, "calculate", arguments[:half]),
        ToolCallDelta(0, "calculate", arguments[half:]),
        ToolCalled(0, ToolCall("calculate", arguments)),
        ResponseFinished(input_tokens=30, reasoning_tokens=12, answer_tokens=20),
    ]


def test_tools_reach_the_model_and_the_session_echoes_them() -> None:
    h = Harness()
    with_tools(h)
    assert h.events[-1]["session"]["tools"] == [CALCULATE]
    h.text_turn()
    h.send({"type": "response.create"})
    assert h.last_start().request.tools == [CALCULATE]
    h.send({"type": "session.update", "session": {"tool_choice": "none"}})
    h.send({"type": "response.cancel"})
    h.send({"type": "response.create"})
    assert h.last_start().request.tools == []  # tool_choice none: the model is shown none


def test_a_tool_call_is_a_function_call_item_and_is_never_spoken() -> None:
    h = Harness()
    with_tools(h)
    h.text_turn()
    h.send({"type": "response.create"})
    action = h.last_start()
    events = [e for event in call_events() for e in h.feed(action.response_id, event)]
    assert types(events) == [
        "response.output_item.added",
        "conversation.item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    added = events[0]["item"]
    assert added["type"] == "function_call" and added["status"] == "in_progress"
    call_id = added["call_id"]
    done = events[4]
    assert done["call_id"] == call_id and done["name"] == "calculate"
    assert json.loads(done["arguments"]) == {"expression": "7 * 6"}
    response = events[-1]["response"]
    assert response["status"] == "completed"
    assert [item["type"] for item in response["output"]] == ["function_call"]
    assert response["output"][0]["status"] == "completed"
    assert not [e for e in events if "audio" in e["type"] or "transcript" in e["type"]]


def test_a_function_result_goes_back_to_the_model_and_the_answer_is_spoken() -> None:
    h = Harness()
    with_tools(h)
    h.text_turn()
    h.send({"type": "response.create"})
    call_id = ""
    for event in call_events():
        for out in h.feed(h.last_start().response_id, event):
            if out["type"] == "response.function_call_arguments.done":
                call_id = out["call_id"]
    created = h.send(
        {
            "type": "conversation.item.create",
            "item": {
                "type": "function_call_output",
                "call_id": call_id,
                "output": '{"result": 42}',
            },
        }
    )
    assert types(created) == ["conversation.item.added", "conversation.item.done"]
    assert created[0]["item"]["type"] == "function_call_output"
    h.send({"type": "response.create"})
    turns = h.last_start().request.turns
    assert [t.role for t in turns] == ["user", "assistant", "tool"]
    assert turns[1].tool_calls == [ToolCall("calculate", '{"expression": "7 * 6"}')]
    assert turns[2].name == "calculate" and turns[2].text == '{"result": 42}'


def test_speech_before_a_call_is_its_own_message_item() -> None:
    h = Harness()
    with_tools(h)
    h.text_turn()
    h.send({"type": "response.create"})
    rid = h.last_start().response_id
    h.feed(rid, AnswerDelta("Let me check."))
    events = [e for event in call_events()[1:] for e in h.feed(rid, event)]
    output = events[-1]["response"]["output"]
    assert [item["type"] for item in output] == ["message", "function_call"]
    indices = {
        e["item"]["id"]: e["output_index"]
        for e in h.events
        if e["type"] == "response.output_item.added"
    }
    assert sorted(indices.values()) == [0, 1]


def test_reasoning_is_sent_only_to_clients_that_ask_for_it() -> None:
    hidden, shown = Harness(), Harness()
    shown.send({"type": "session.update", "session": {"include": ["response.reasoning_text"]}})
    for h in (hidden, shown):
        h.text_turn()
        h.send({"type": "response.create"})
        rid = h.last_start().response_id
        for event in (
            ReasoningDelta("I hear: seven times six."),
            AnswerDelta("Forty two."),
            ResponseFinished(input_tokens=5, reasoning_tokens=7, answer_tokens=3),
        ):
            h.feed(rid, event)
    assert not [e for e in hidden.events if "reasoning" in e["type"]]
    assert "response.reasoning_text.delta" in types(shown.events)
    for h in (hidden, shown):  # usage counts stay for everyone
        usage = h.events[-1]["response"]["usage"]
        assert usage["output_token_details"]["reasoning_tokens"] == 7


def test_committed_audio_is_transcribed_when_asked() -> None:
    h = Harness(turn_detection=ServerVad())
    h.send(
        {
            "type": "session.update",
            "session": {"audio": {"input": {"transcription": {"model": "gpt-4o-transcribe"}}}},
        }
    )
    h.send_all(appends(spoken("what is seven times six")))
    [transcribe] = [a for a in h.actions if isinstance(a, Transcribe)]
    start = h.last_start()
    assert transcribe.after_response_id == start.response_id  # the reply speaks first
    assert transcribe.audio.dtype == np.float32 and len(transcribe.audio) > 16_000
    item_id = transcribe.item_id
    deltas = h._take(h.session.on_transcript_delta(item_id, "what is "))
    deltas += h._take(h.session.on_transcript_delta(item_id, "seven times six"))
    done = h._take(
        h.session.on_transcript_done(
            item_id, "what is seven times six", {"type": "duration", "seconds": 2.0}
        )
    )
    assert types(deltas + done) == [
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
    ]
    assert done[0]["transcript"] == "what is seven times six"
    retrieved = h.send({"type": "conversation.item.retrieve", "item_id": item_id})
    assert retrieved[0]["item"]["content"][0]["transcript"] == "what is seven times six"
    # the transcript is for the client: the model still hears the audio, not the text
    h.send({"type": "response.cancel"})
    h.send({"type": "response.create"})
    turn = h.last_start().request.turns[0]
    assert turn.audio is not None and turn.text is None


def test_without_transcription_nothing_is_transcribed() -> None:
    h = Harness(turn_detection=ServerVad())
    h.send_all(appends(spoken("six")))
    assert not [a for a in h.actions if isinstance(a, Transcribe)]


def test_a_failed_transcript_is_reported_on_its_item() -> None:
    h = Harness()
    h.send({"type": "session.update", "session": {"audio": {"input": {"transcription": {}}}}})
    h.send_all(appends(spoken("six"), ms=100))
    h.send({"type": "input_audio_buffer.commit"})
    [transcribe] = [a for a in h.actions if isinstance(a, Transcribe)]
    failed = h._take(h.session.on_transcript_failed(transcribe.item_id, "no model"))
    assert types(failed) == ["conversation.item.input_audio_transcription.failed"]


def test_semantic_vad_asks_the_model_and_commits_on_its_word() -> None:
    h = Harness(turn_detection=SemanticVad(eagerness="high"), speculate_after_ms=60)
    h.send_all(appends(spoken("what is seven times six", tail_ms=300)))
    asks = [a for a in h.actions if isinstance(a, JudgeTurnEnd)]
    assert asks and not [e for e in h.events if e["type"] == "input_audio_buffer.committed"]
    speculative = h.last_start()
    assert speculative.speculative  # speculation follows the same pauses
    events = h._take(h.session.on_turn_verdict(asks[-1].request_id, 0.95, h.clock))
    assert types(events)[:2] == [
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
    ]
    assert "response.created" in types(events)
    [confirm] = [a for a in h.actions if isinstance(a, ConfirmResponse)]
    assert confirm.response_id == speculative.response_id and confirm.detector == "semantic_vad"


def test_a_refused_request_fails_its_response_with_a_client_error() -> None:
    h = Harness()
    h.text_turn()
    h.send({"type": "response.create"})
    rid = h.last_start().response_id
    message = "the conversation takes 9000 tokens and the model has room for 4000"
    events = h._take(h.session.on_response_failed(rid, ErrorCode.CONTEXT_LENGTH_EXCEEDED, message))
    assert errors(events) == [ErrorCode.CONTEXT_LENGTH_EXCEEDED]
    error = next(e for e in events if e["type"] == "error")["error"]
    assert error["type"] == "invalid_request_error" and error["message"] == message
    done = next(e for e in events if e["type"] == "response.done")["response"]
    assert done["status"] == "failed"
    assert done["status_details"]["error"]["code"] == "context_length_exceeded"


async def test_the_session_goes_on_after_each_of_these() -> None:
    h = Harness()
    with_tools(h)
    h.text_turn()
    h.send({"type": "response.create"})
    h._take(
        h.session.on_response_failed(
            h.last_start().response_id, ErrorCode.INVALID_TOOL_CALL, "bad call"
        )
    )
    h.text_turn()
    h.send({"type": "response.create"})
    assert isinstance(h.last_start(), StartResponse)
    events = await h.play(FixedReplyResponder())
    assert events[-1]["response"]["status"] == "completed"
