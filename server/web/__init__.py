"""The browser page: served at `/`, its files under `/web/`, its settings at `/web/config.json`.

The page itself is plain HTML, CSS and JavaScript modules in `server/web/static/` (no build
step); this module only serves it, for the realtime server (`server/app.py`) and for an app's own
backend (`examples/web_backend.py`). server/web/README.md describes the page, the key flow and
what browsers it needs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"
INDEX_FILE = STATIC_DIR / "index.html"
PAGE_PATH = "/"
FILES_PATH = "/web"
CONFIG_PATH = "/web/config.json"  # registered before the files, so it wins over them
# The page runs only its own files; it may talk to a realtime server on another origin than the
# one that served it (an app backend serving the page), so connections may go anywhere.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws: wss: http: https:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)

ConfigSource = Mapping[str, Any] | Callable[[], Awaitable[Mapping[str, Any]]]


def page_config(
    *,
    model: str,
    voices: list[str],
    default_voice: str | None,
    efforts: list[str],
    default_effort: str | None,
    auth_required: bool,
    first_audio_target_seconds: float,
    realtime_url: str | None = None,
    client_secret_url: str | None = None,
) -> dict[str, Any]:
    """What the page needs to know before it connects (`/web/config.json`).

    `realtime_url` None: the page connects to `/v1/realtime` on the host that served it.
    For GPT-Live the page derives its URL from this one (`/v1/live/sessions` beside it).
    `client_secret_url`: where the page POSTs for a short-lived client secret when
    `auth_required` (an app backend's endpoint); None where no backend serves the page.
    """
    return {
        "model": model,
        "voices": list(voices),
        "default_voice": default_voice,
        "efforts": list(efforts),
        "default_effort": default_effort,
        "auth_required": auth_required,
        "first_audio_target_seconds": first_audio_target_seconds,
        "realtime_url": realtime_url,
        "client_secret_url": client_secret_url,
    }


def mount_page(app: FastAPI, config: ConfigSource) -> None:
    """Serve the page on `app`: `/`, `/web/config.json` (from `config`, a mapping or an async
    function returning one) and the page's files under `/web/`."""

    async def index() -> FileResponse:
        headers = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache"}
        return FileResponse(INDEX_FILE, headers=headers)

    async def settings() -> JSONResponse:
        body = config if isinstance(config, Mapping) else await config()
        return JSONResponse(dict(body), headers={"Cache-Control": "no-store"})

    app.add_api_route(PAGE_PATH, index, methods=["GET", "HEAD"], include_in_schema=False)
    app.add_api_route(CONFIG_PATH, settings, methods=["GET"], include_in_schema=False)
    app.mount(FILES_PATH, StaticFiles(directory=STATIC_DIR), name="web")
