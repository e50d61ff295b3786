"""Barge-in in headless Chromium: the user speaks over the reply; playback stops at once, the
page truncates the assistant's item at the milliseconds really played, and the server's
history (`conversation.item.retrieve`) holds only the words that were played."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.web.browser import browser_page, open_page, speech_wav, wait_for_assistant_turns
from tts.espeak import DEFAULT_RATE_WPM, synthesize
from tts.espeak_backend import VOICES

QUESTION = "what is seven times six"
INTERRUPTION = "what is two plus two"
SPEED = 0.5  # a slow reply (about 4 s) leaves a wide window to speak over it
VOICE = "alloy"
LEAD_SILENCE_S = 1.0
# From the end of the question to the interruption: the 500 ms turn-end window, the reply's
# first audio (typically 0.1-0.5 s after it) and about a second of the reply's speech.
INTERRUPT_AFTER_S = 2.2
STILL_MS = 400  # playback must not move on after the stop, over this long
WORD_SLACK = 1  # the page's word estimate may differ from the server's by one boundary word


def test_speech_over_the_reply_stops_it_and_truncates_the_history(
    playwright: Any, open_server: Any, tmp_path: Path
) -> None:
    wav = speech_wav(
        tmp_path / "barge-in.wav", [LEAD_SILENCE_S, QUESTION, INTERRUPT_AFTER_S, INTERRUPTION, 3.0]
    )
    with browser_page(playwright, tmp_path / "profile", microphone_wav=wav) as page:
        open_page(page, open_server.url + "/")
        page.select_option("#speed", str(SPEED))
        page.select_option("#voice", VOICE)
        page.check("input[value=server_vad]")
        page.click("#connect")
        cut = wait_for_assistant_turns(page, 1, "[data-heard]")[0]
        played = cut.number("playedMs")
        rendered = _rendered_ms(page, cut.data["itemId"])
        page.wait_for_timeout(STILL_MS)
        later = wait_for_assistant_turns(page, 1, "[data-heard]")[0]

        # the page stopped playing the reply, early (the server had usually sent all of it by
        # then: its response is done, and only the page knows how much was heard)
        assert cut.data.get("interrupted") == "true", cut.data
        assert 0 < played < cut.number("receivedMs"), cut.data
        assert _rendered_ms(page, cut.data["itemId"]) == rendered, "playback went on"
        assert later.number("playedMs") == played
        assert "finished" not in later.data, later.data

        # the server cut the item where the page said, and keeps only the words played
        assert cut.number("truncatedMs") == cut.number("cutAtMs") == played, cut.data
        full, heard = cut.answer or "", cut.data["heard"]
        assert "forty two" in full.lower(), full  # the whole answer had been written
        assert full.startswith(heard) and len(heard) < len(full), (heard, full)
        assert cut.heard == heard and cut.unheard == full[len(heard) :], cut
        expected = _words_played(full, played)
        assert abs(len(heard.split()) - expected) <= WORD_SLACK, (heard, expected, played)

        # and the conversation goes on: the interruption is answered
        wait_for_assistant_turns(page, 2, "[data-status=completed]")


def _rendered_ms(page: Any, item_id: str) -> float:
    """What the audio thread reports it has played of `item_id` (before output latency)."""
    return float(page.evaluate("(id) => window.stepRealtimePage.audio.rendered.get(id)", item_id))


def _words_played(text: str, played_ms: float) -> int:
    """How many words of `text` the server's voice says by `played_ms` (word midpoints), from
    espeak-ng's own word timings for the same voice and rate."""
    spec = VOICES[VOICE]
    rate_wpm = round(DEFAULT_RATE_WPM * spec.tempo * SPEED)
    _, _, words = synthesize(text, spec.espeak_voice, rate_wpm, spec.pitch)
    return sum(1 for word in words if (word.start_ms + word.end_ms) / 2 <= played_ms)
