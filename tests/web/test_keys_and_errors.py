"""Keys done right and errors in plain words, in headless Chromium against the real server:
the example backend's client-secret flow with a push-to-talk turn, a bad client secret, a
full server (close code 1013) and a denied microphone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

from tests.web.browser import (
    PAGE_TIMEOUT_MS,
    browser_page,
    error_text,
    open_page,
    page_connection,
    speech_wav,
    wait_for_assistant_turns,
    wait_until_free,
)

QUESTION = "what is seven times six"
SPEECH_LEVEL_PERCENT = 5  # the page's meter is 0 in silence, 30-70 % for speech
RELEASE_AFTER_QUIET_MS = 600  # let go of Talk once the speech has been over this long

# Runs in the page: resolves once the microphone meter has shown speech and then quiet.
WAIT_FOR_SPEECH_THEN_QUIET = """([level, quietMs]) => new Promise((resolve) => {
  let heard = false;
  let quietSince = null;
  const timer = setInterval(() => {
    const width = parseFloat(document.getElementById("meter-level").style.width) || 0;
    const now = performance.now();
    if (width > level) {
      heard = true;
      quietSince = null;
    } else if (heard) {
      quietSince = quietSince ?? now;
      if (now - quietSince > quietMs) {
        clearInterval(timer);
        resolve(true);
      }
    }
  }, 20);
})"""


def test_backend_mints_a_client_secret_and_push_to_talk_works(
    playwright: Any, keyed: Any, tmp_path: Path
) -> None:
    wait_until_free(keyed.server.url)
    wav = speech_wav(tmp_path / "question.wav", [0.8, QUESTION, 4.0])
    with browser_page(playwright, tmp_path / "profile", microphone_wav=wav) as page:
        responses: list[Any] = []
        page.on("response", lambda response: responses.append(response))
        open_page(page, keyed.backend.url + "/")
        assert page.is_hidden("#secret-row")  # the backend gives secrets: nothing to paste
        page.click("#connect")
        page.wait_for_selector("#status[data-state=connected]")
        connection = page_connection(page)
        assert connection["secret"].startswith("ek_"), connection
        assert connection["url"] == f"ws://127.0.0.1:{keyed.server.port}/v1/realtime"
        assert connection["protocol"] == "realtime", connection
        bodies = _bodies(responses)
        assert any('"value": "ek_' in body or '"value":"ek_' in body for body in bodies), bodies
        assert not any(keyed.api_key in body for body in bodies), bodies

        # push to talk: hold Talk while the question is heard, let go after it
        page.hover("#talk")
        page.mouse.down()
        page.evaluate(WAIT_FOR_SPEECH_THEN_QUIET, [SPEECH_LEVEL_PERCENT, RELEASE_AFTER_QUIET_MS])
        page.mouse.up()
        (turn,) = wait_for_assistant_turns(page, 1, "[data-finished]")
        assert "forty two" in (turn.answer or "").lower(), turn
        assert turn.number("firstPacketS") > 0 and turn.number("serverS") >= 0, turn.data
        assert error_text(page) == ""


def test_a_bad_client_secret_is_refused_in_plain_words(
    playwright: Any, keyed: Any, tmp_path: Path
) -> None:
    with browser_page(playwright, tmp_path / "profile") as page:
        open_page(page, keyed.server.url + "/")  # the keyed server itself: no backend
        assert page.is_visible("#secret-row")
        page.fill("#secret", keyed.api_key)  # a long-lived key never goes into the page
        page.click("#connect")
        page.wait_for_function("() => document.getElementById('error').textContent !== ''")
        assert "Never paste a long-lived API key" in error_text(page)
        page.fill("#secret", "ek_not_a_secret_the_server_minted")
        page.click("#connect")
        page.wait_for_function(
            "() => document.getElementById('error').textContent.includes('refused the key')"
        )
        assert page.text_content("#status") == "not connected"


def test_a_full_server_says_so(playwright: Any, keyed: Any, tmp_path: Path) -> None:
    wait_until_free(keyed.server.url)
    held = connect(
        f"ws://127.0.0.1:{keyed.server.port}/v1/realtime",
        additional_headers={"Authorization": f"Bearer {keyed.api_key}"},
    )
    try:
        assert json.loads(held.recv(timeout=PAGE_TIMEOUT_MS / 1000))["type"] == "session.created"
        with browser_page(playwright, tmp_path / "profile") as page:
            open_page(page, keyed.backend.url + "/")
            page.click("#connect")
            page.wait_for_function(
                "() => document.getElementById('error').textContent.includes('server is full')"
            )
            wait_until_disconnected(page)
    finally:
        held.close()


def test_a_denied_microphone_is_explained(
    playwright: Any, open_server: Any, tmp_path: Path
) -> None:
    with browser_page(playwright, tmp_path / "profile", grant_microphone=False) as page:
        open_page(page, open_server.url + "/")
        page.click("#connect")
        page.wait_for_function("() => document.getElementById('error').textContent !== ''")
        assert "not allowed to use the microphone" in error_text(page), error_text(page)
        wait_until_disconnected(page)


def wait_until_disconnected(page: Any) -> None:
    """The page shows the error first, then tears its audio down and says it is not connected."""
    page.wait_for_function(
        "() => document.getElementById('status').textContent === 'not connected'",
        timeout=PAGE_TIMEOUT_MS,
    )


def _bodies(responses: list[Any]) -> list[str]:
    """The text of the documents and fetches the page got (the page, settings, secrets)."""
    kinds = ("fetch", "xhr", "document")
    return [r.text() for r in responses if r.request.resource_type in kinds and r.ok]
