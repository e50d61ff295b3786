"""The realtime server serves the page: `/`, its files under `/web/`, its settings."""

from __future__ import annotations

from fastapi.testclient import TestClient

from server.app import create_app
from server.settings import Settings
from server.web import STATIC_DIR
from streaming.responder import REASONING_EFFORTS
from tests.server.espeak_responder import FixedReplyResponder


def client(settings: Settings) -> TestClient:
    return TestClient(create_app(FixedReplyResponder(), settings), base_url="http://127.0.0.1")


def test_the_page_and_its_files() -> None:
    http = client(Settings())
    page = http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.text == (STATIC_DIR / "index.html").read_text()
    scripts = ("app.js", "connection.js", "realtime.js", "live.js", "capture-worklet.js")
    for name in (*scripts, "playback-worklet.js", "resample.js"):
        script = http.get(f"/web/{name}")
        assert script.status_code == 200, name
        assert "javascript" in script.headers["content-type"], script.headers
    assert http.get("/web/style.css").headers["content-type"].startswith("text/css")
    # only the page's own files: not the Python package around them
    assert http.get("/web/__init__.py").status_code == 404
    assert http.get("/web/../__init__.py").status_code == 404


def test_the_page_settings_without_and_with_keys() -> None:
    settings = http_settings = client(Settings()).get("/web/config.json").json()
    assert settings["voices"] == FixedReplyResponder().voices()
    assert settings["default_voice"] == "en-us"
    assert settings["efforts"] == list(REASONING_EFFORTS)
    assert settings["auth_required"] is False
    assert settings["first_audio_target_seconds"] == 0.92
    assert settings["realtime_url"] is None and settings["client_secret_url"] is None
    keyed = client(Settings(api_keys=("sk-test",), reasoning_effort="low"))
    http_settings = keyed.get("/web/config.json").json()
    assert http_settings["auth_required"] is True and http_settings["default_effort"] == "low"
    assert "sk-test" not in keyed.get("/web/config.json").text
