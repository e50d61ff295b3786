"""The page speaking GPT-Live (/v1/live/sessions) in headless Chromium against the real server:
a spoken question answered with its audio played, the client-secret flow through the example
backend, and a session.start the server refuses, in plain words."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.web.browser import (
    browser_page,
    error_text,
    open_page,
    page_connection,
    speech_wav,
    turns,
    wait_for_assistant_turns,
    wait_until_free,
)

QUESTION = "what is seven times six"
LEAD_SILENCE_S = 1.0  # the page connects while the fake microphone is still silent
PLAYED_TOLERANCE_MS = 50  # the resampler's rounding and the last render quantum
# What a GPT-Live client sends: no commit, no response.create, no truncate, no turn detection
LIVE_CLIENT_TYPES = {"session.start", "session.update", "session.input_audio.append"}


def test_a_spoken_question_is_answered_over_gpt_live(
    playwright: Any, open_server: Any, tmp_path: Path
) -> None:
    wav = speech_wav(tmp_path / "question.wav", [LEAD_SILENCE_S, QUESTION, 4.0])
    with browser_page(playwright, tmp_path / "profile", microphone_wav=wav) as page:
        sent, received = _record_frames(page)
        open_page(page, open_server.url + "/")
        page.select_option("#dialect", "live")
        # what GPT-Live has no setting for is off, and the page says why
        assert page.is_disabled("input[value=push]") and page.is_disabled("#speed")
        assert "server takes the turns" in (page.text_content("#dialect-note") or "")
        page.click("#connect")
        page.wait_for_selector("#status[data-state=connected]")
        url = page.evaluate("window.stepRealtimePage.connection.url")
        assert url == f"ws://127.0.0.1:{open_server.port}/v1/live/sessions", url
        assert page.is_disabled("#voice") and page.is_disabled("#dialect")  # fixed at start
        (turn,) = wait_for_assistant_turns(page, 1, "[data-finished]")

        assert "forty two" in (turn.answer or "").lower(), turn
        assert turn.data["status"] == "completed", turn.data
        assert turn.reasoningVisible and turn.reasoning, turn  # the backend's, as delegated
        # all of the reply's audio was played, through the jitter buffer
        received_ms, played_ms = turn.number("receivedMs"), turn.number("playedMs")
        assert received_ms > 500, turn.data  # "seven times six is forty two" is ~2 s of speech
        assert abs(played_ms - received_ms) <= PLAYED_TOLERANCE_MS, turn.data
        # the first-packet latency, whole: GPT-Live does not say when the turn was closed
        assert turn.number("firstPacketS") > 0, turn.data
        assert "endpointS" not in turn.data and "first audio" in (turn.meta or ""), turn
        assert (page.text_content("#latency-summary") or "").startswith("1 turn")
        assert [t.role for t in turns(page)] == ["user", "assistant"]
        assert error_text(page) == ""

    types = [json.loads(frame)["type"] for frame in sent]
    assert types[0] == "session.start" and set(types) <= LIVE_CLIENT_TYPES, set(types)
    start = json.loads(sent[0])["session"]
    assert start["audio"]["format"] == {"type": "audio/pcm", "rate": 24000}, start
    received_types = {json.loads(frame)["type"] for frame in received}
    assert {"session.started", "session.output_audio.delta"} <= received_types, received_types


def test_gpt_live_opens_with_the_backends_client_secret(
    playwright: Any, keyed: Any, tmp_path: Path
) -> None:
    wait_until_free(keyed.server.url)
    with browser_page(playwright, tmp_path / "profile") as page:
        open_page(page, keyed.backend.url + "/")
        page.select_option("#dialect", "live")
        page.click("#connect")
        page.wait_for_selector("#status[data-state=connected]")
        connection = page_connection(page)
        assert connection["secret"].startswith("ek_"), connection
        assert connection["url"] == f"ws://127.0.0.1:{keyed.server.port}/v1/live/sessions"
        assert connection["protocol"] == "realtime", connection
        page.click("#connect")  # Disconnect: no error, the protocol can be changed again
        page.wait_for_selector("#status[data-state=idle]")
        assert error_text(page) == ""
        assert page.is_enabled("#dialect")


def test_a_refused_session_start_is_explained(
    playwright: Any, open_server: Any, tmp_path: Path
) -> None:
    with browser_page(playwright, tmp_path / "profile") as page:
        open_page(page, open_server.url + "/")
        page.evaluate(  # a voice the server does not have
            "() => document.getElementById('voice').append(new Option('no-such-voice'))"
        )
        page.select_option("#voice", "no-such-voice")
        page.select_option("#dialect", "live")
        page.click("#connect")
        page.wait_for_function("() => document.getElementById('error').textContent !== ''")
        assert "did not start the session" in error_text(page), error_text(page)
        assert "no-such-voice" in error_text(page), error_text(page)
        page.wait_for_selector("#status[data-state=idle]")


def _record_frames(page: Any) -> tuple[list[str], list[str]]:
    """The text frames the page's WebSockets send and receive, as they go."""
    sent: list[str] = []
    received: list[str] = []

    def on_socket(socket: Any) -> None:
        socket.on("framesent", lambda payload: sent.append(payload))
        socket.on("framereceived", lambda payload: received.append(payload))

    page.on("websocket", on_socket)
    return sent, received
