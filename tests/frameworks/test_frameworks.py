"""pipecat, livekit-agents (AgentSession and RealtimeSession) and the openai-agents SDK, each
unchanged and at its default settings, against the real server on the embedded default model.

Every client runs in its framework's own virtual environment (scripts/setup_frameworks.sh) and
reports what the framework made of the session; a recording relay in front of the server keeps
what crossed the wire. A test asserts on both: the server answered without an error event, and
the framework logged no error, holds the user's transcript, called the tool and spoke its
result, and cut its reply short on barge-in. tests/frameworks/NOTES.md has what each framework
sends and expects.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from num2words import num2words

from tests.frameworks.conftest import CLIENTS, RunClient
from tests.frameworks.harness import PAUSED_QUESTION, ClientRun, Wire
from tests.shipped_model import NEEDS_RETRAINED_MODEL

BYTES_PER_MS = 48  # PCM16 at 24 kHz, the format every framework here asks for
QUESTION_WORDS = ("seven", "six")  # of "what is seven times six"

ALL_CLIENTS = pytest.mark.parametrize("client", list(CLIENTS))


def assert_clean(run: ClientRun) -> None:
    """No error event from the server, no error logged or raised by the framework."""
    assert not run.wire.server_errors(), run.summary()
    assert not run.error_logs(), run.summary()
    assert not run.kind("framework_error"), run.summary()
    assert run.returncode == 0, run.summary()


def replies(wire: Wire) -> list[dict[str, Any]]:
    """The responses the server finished, in order."""
    return [event["response"] for event in wire.server_events("response.done")]


def spoken_text(response: dict[str, Any]) -> str:
    """What a response said aloud: the transcripts of its audio content."""
    return " ".join(
        part.get("transcript") or ""
        for item in response.get("output", [])
        if item.get("type") == "message"
        for part in item.get("content", [])
    )


def audio_ms_by_item(wire: Wire) -> dict[str, float]:
    """How much reply audio the server sent for each item, in ms."""
    lengths: dict[str, float] = {}
    for event in wire.server_events("response.output_audio.delta"):
        item = event["item_id"]
        lengths[item] = lengths.get(item, 0.0) + len(event["delta"]) * 3 / 4 / BYTES_PER_MS
    return lengths


def mentions(text: str, number: str) -> bool:
    """Whether `text` says `number`, in digits or in words ("42", "forty two")."""
    words = re.sub(r"[^a-z0-9 ]", " ", text.lower().replace("-", " "))
    spelled = num2words(int(number)).replace("-", " ") if number.isdigit() else number
    return f" {number} " in f" {words} " or spelled in " ".join(words.split())


# --- a normal spoken turn ---


@ALL_CLIENTS
def test_normal_turn_has_no_error(client: str, client_run: RunClient) -> None:
    run = client_run(client, "turn")
    assert_clean(run)
    done = replies(run.wire)
    assert done and done[0]["status"] == "completed", run.summary()
    assert spoken_text(done[0]).strip(), "the reply said nothing"
    assert sum(audio_ms_by_item(run.wire).values()) > 500, "under half a second of reply audio"


@ALL_CLIENTS
def test_every_session_update_applies(client: str, client_run: RunClient) -> None:
    """Each session.update the framework sends is applied (session.updated, no error), and
    what it asked for is echoed: its turn detection and its transcription."""
    run = client_run(client, "turn")
    updates = run.wire.client_events("session.update")
    updated = run.wire.server_events("session.updated")
    assert len(updated) == len(updates), run.summary()
    asked = _input_settings(updates)
    echoed = updated[-1]["session"]["audio"]["input"]
    if "turn_detection" in asked:
        assert echoed["turn_detection"]["type"] == asked["turn_detection"]["type"]
    if asked.get("transcription"):
        assert echoed["transcription"], "transcription was asked for but is off"


def _input_settings(updates: list[dict[str, Any]]) -> dict[str, Any]:
    """The audio input settings a sequence of session.update events leaves in force."""
    merged: dict[str, Any] = {}
    for update in updates:
        merged.update(((update["session"].get("audio") or {}).get("input")) or {})
    return merged


@ALL_CLIENTS
def test_reasoning_is_not_sent_unasked(client: str, client_run: RunClient) -> None:
    """None of the frameworks asks for reasoning events, so none arrive (usage still does)."""
    run = client_run(client, "turn")
    kinds = {event["type"] for event in run.wire.server_events()}
    assert not {kind for kind in kinds if kind.startswith("response.reasoning")}, kinds
    assert all("usage" in response for response in replies(run.wire))


# pipecat asks for no transcription at its defaults; its realtime example turns it on with
# `InputAudioTranscription()`, which is what its client's --transcription does.
TRANSCRIPTION_ARGS = {"pipecat": ("--transcription",)}
ANSWER_WORDS = ("forty",)  # of the reply, "forty two": a transcript of the reply is no user's


@NEEDS_RETRAINED_MODEL
@ALL_CLIENTS
def test_user_transcript_reaches_the_framework(client: str, client_run: RunClient) -> None:
    run = client_run(client, "turn", *TRANSCRIPTION_ARGS.get(client, ()))
    completed = run.wire.server_events("conversation.item.input_audio_transcription.completed")
    committed = {e["item_id"] for e in run.wire.server_events("input_audio_buffer.committed")}
    assert completed, f"no input_audio_transcription.completed; {run.summary()}"
    assert {event["item_id"] for event in completed} <= committed
    held = " ".join(run.one("summary")["user_transcripts"]).lower()
    assert held, "the framework's conversation context holds no user transcript"
    assert all(word in held for word in QUESTION_WORDS), held
    assert not any(word in held for word in ANSWER_WORDS), f"the reply, not the question: {held}"
    assert_clean(run)


@pytest.mark.parametrize("client", ["pipecat"])
def test_no_transcripts_unless_asked(client: str, client_run: RunClient) -> None:
    """A framework that asks for no transcription gets none (pipecat at its defaults)."""
    run = client_run(client, "turn")
    assert not _input_settings(run.wire.client_events("session.update")).get("transcription")
    assert not run.wire.server_events("conversation.item.input_audio_transcription.completed")


# --- function calling ---


@NEEDS_RETRAINED_MODEL
@ALL_CLIENTS
def test_function_tool_is_called_and_its_result_spoken(client: str, client_run: RunClient) -> None:
    run = client_run(client, "tool")
    assert_clean(run)
    declared = [
        t for u in run.wire.client_events("session.update") for t in u["session"].get("tools") or []
    ]
    assert [t["name"] for t in declared] == ["calculate"], declared
    calls = run.kind("tool_call")
    assert calls, f"the framework never called calculate; {run.summary()}"
    result = calls[0]["result"]
    assert result == "42", calls[0]
    call_items = [
        event["item"]
        for event in run.wire.server_events("response.output_item.done")
        if event["item"]["type"] == "function_call"
    ]
    assert call_items and call_items[0]["status"] == "completed", call_items
    call_id = call_items[0]["call_id"]
    outputs = [
        event["item"]
        for event in run.wire.client_events("conversation.item.create")
        if event["item"]["type"] == "function_call_output"
    ]
    assert [o["call_id"] for o in outputs] == [call_id], outputs
    after = _responses_after_output(run.wire, call_id)
    assert after and mentions(spoken_text(after[0]), result), [spoken_text(r) for r in after]
    assert not any(
        "calculate" in spoken_text(response) or "<tool_call>" in spoken_text(response)
        for response in replies(run.wire)
    ), "a tool call was spoken"


def _responses_after_output(wire: Wire, call_id: str) -> list[dict[str, Any]]:
    """The responses the server finished after the framework sent the call's output."""
    seen_output = False
    found = []
    for side, event in wire.frames:
        if side == "client" and event.get("type") == "conversation.item.create":
            item = event["item"]
            seen_output |= item.get("type") == "function_call_output" and item["call_id"] == call_id
        elif seen_output and side == "server" and event.get("type") == "response.done":
            found.append(event["response"])
    return found


# --- barge-in ---

# The one error a barge-in may draw, by design: OpenAI's answer to a `response.cancel` that finds
# no response in progress. The barge-in speech ("stop, wait a moment please") can reach the
# server as two turns; the second one's `speech_started` ends the reply to the first on the
# server (`interrupt_response`) while livekit, which has that reply's `response.created` but not
# yet its `response.done`, sends `response.cancel` for it. The server answers as OpenAI does
# (`Session._on_response_cancel`), and the frameworks drop that answer as benign (livekit-agents
# on its "Cancellation failed" message, pipecat on its code), so this test allows it where the
# wire shows that race, and nowhere else; the framework must still log no error.
CANCEL_NOT_ACTIVE = "response_cancel_not_active"


def cancel_races(wire: Wire) -> list[dict[str, Any]]:
    """The `response_cancel_not_active` errors that answer a `response.cancel` racing the end of
    a response: the cancel was sent after that response's `response.created` (the last one
    before it), and the error came after that response's `response.done`."""
    raced = []
    created: dict[str, int] = {}  # response id -> its position on the wire
    done: dict[str, int] = {}
    cancel: dict[str, Any] | None = None
    cancel_at = -1
    for at, (side, event) in enumerate(wire.frames):
        kind = event.get("type")
        if side == "client" and kind == "response.cancel":
            cancel, cancel_at = event, at
        elif side == "server" and kind == "response.created":
            created[event["response"]["id"]] = at
        elif side == "server" and kind == "response.done":
            done[event["response"]["id"]] = at
        elif side == "server" and kind == "error" and cancel is not None:
            if event["error"].get("code") != CANCEL_NOT_ACTIVE:
                continue
            before = [(place, id_) for id_, place in created.items() if place < cancel_at]
            target = max(before)[1] if before else None
            named = cancel.get("response_id")
            if target is not None and named in (None, target) and done.get(target, at) < at:
                raced.append(event["error"])
    return raced


def assert_clean_but_for_cancel_races(run: ClientRun) -> None:
    """`assert_clean`, but for the cancels that raced a response's end (`cancel_races`)."""
    raced = cancel_races(run.wire)
    assert [e for e in run.wire.server_errors() if e not in raced] == [], run.summary()
    assert not run.error_logs(), run.summary()
    assert not run.kind("framework_error"), run.summary()
    assert run.returncode == 0, run.summary()


@ALL_CLIENTS
def test_barge_in_truncates_the_reply(client: str, client_run: RunClient) -> None:
    run = client_run(client, "barge_in")
    assert run.kind("interrupted"), f"the framework never stopped its reply; {run.summary()}"
    truncates = run.wire.client_events("conversation.item.truncate")
    assert truncates, f"the framework sent no conversation.item.truncate; {run.summary()}"
    sent = audio_ms_by_item(run.wire)
    truncate = truncates[0]
    assert 0 < truncate["audio_end_ms"] < sent[truncate["item_id"]], (truncate, sent)
    truncated = run.wire.server_events("conversation.item.truncated")
    assert [e["item_id"] for e in truncated][:1] == [truncate["item_id"]], run.summary()
    assert_clean_but_for_cancel_races(run)


# --- a paused question: the turn closed too early is merged ---


@ALL_CLIENTS
def test_a_paused_question_is_merged_and_answered_once(client: str, client_run: RunClient) -> None:
    run = client_run(client, "merge")
    committed = [e["item_id"] for e in run.wire.server_events("input_audio_buffer.committed")]
    deleted = [e["item_id"] for e in run.wire.server_events("conversation.item.deleted")]
    # the plain question, the paused one's first part (merged away), the whole paused one
    assert (
        len(committed) == 3
        and deleted == [committed[1]]
        or (
            len(deleted) == 2 and deleted[1] == committed[1]  # with the withdrawn reply's item
        )
    ), run.summary()
    last = replies(run.wire)[-1]
    assert last["status"] == "completed", run.summary()
    assert mentions(spoken_text(last), PAUSED_QUESTION[2]), spoken_text(last)
    assert_clean_but_for_cancel_races(run)
