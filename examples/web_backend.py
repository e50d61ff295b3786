"""A tiny app backend for the browser page on a server with API keys.

The page must never hold the long-lived API key. This backend holds it (from the environment)
and serves the page; when the page asks `POST /session`, it mints a short-lived client secret
from the realtime server's `POST /v1/realtime/client_secrets` and hands only that to the page,
which connects to the realtime server with it (subprotocol `openai-insecure-api-key.<secret>`).
server/web/README.md describes the flow.

    STEP_REALTIME_API_KEY=sk-... step-realtime serve --api-keys sk-... \\
        --allowed-origins http://127.0.0.1:8001 &
    STEP_REALTIME_API_KEY=sk-... python -m examples.web_backend --server http://127.0.0.1:8000
    # open http://127.0.0.1:8001/

A real app puts its own sign-in in front of `POST /session` (a session cookie, a CSRF check):
whoever can call it can talk to the model on the app's key, for the secret's lifetime.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any

import uvicorn
from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse

from server.web import mount_page

API_KEY_VARIABLE = "STEP_REALTIME_API_KEY"  # the long-lived key; never on a command line
SECRET_TTL_SECONDS = 60  # only has to last until the page's WebSocket opens
UPSTREAM_TIMEOUT_SECONDS = 10.0  # the realtime server answers these requests at once
SESSION_PATH = "/session"


def request_json(url: str, body: dict[str, Any] | None = None, key: str | None = None) -> Any:
    """GET (or POST `body`) JSON; raises `UpstreamError` with the server's message."""
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=UPSTREAM_TIMEOUT_SECONDS) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        detail = error.read().decode("utf-8", "replace")
        raise UpstreamError(f"{url} answered HTTP {error.code}: {detail}") from None
    except OSError as error:
        raise UpstreamError(f"{url} cannot be reached: {error}") from None


class UpstreamError(Exception):
    pass


def create_backend(server: str, api_key: str, realtime_url: str | None = None) -> FastAPI:
    """The backend app: the page, its settings pointed at `server`, and `POST /session`."""
    server = server.rstrip("/")
    realtime_url = realtime_url or server.replace("http", "ws", 1) + "/v1/realtime"
    app = FastAPI(title="step-realtime example backend", docs_url=None, redoc_url=None)

    @app.post(SESSION_PATH)
    async def session() -> JSONResponse:
        # A real app checks here who is asking (its own sign-in) before spending its key.
        body = {"expires_after": {"anchor": "created_at", "seconds": SECRET_TTL_SECONDS}}
        url = server + "/v1/realtime/client_secrets"
        try:
            minted = await asyncio.to_thread(request_json, url, body, api_key)
        except UpstreamError as error:
            return JSONResponse({"error": str(error)}, status_code=502)
        return JSONResponse({"value": minted["value"], "expires_at": minted["expires_at"]})

    async def page_settings() -> dict[str, Any]:
        try:
            settings = await asyncio.to_thread(request_json, server + "/web/config.json")
        except UpstreamError as error:
            raise HTTPException(502, str(error)) from None
        return {**settings, "realtime_url": realtime_url, "client_secret_url": SESSION_PATH}

    mount_page(app, page_settings)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="http://127.0.0.1:8000", help="the realtime server")
    parser.add_argument(
        "--realtime-url", help="the WebSocket URL as the browser reaches it (default: --server's)"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args(argv)
    api_key = os.environ.get(API_KEY_VARIABLE)
    if not api_key:
        print(f"error: set {API_KEY_VARIABLE} to the realtime server's API key", file=sys.stderr)
        return 2
    app = create_backend(args.server, api_key, args.realtime_url)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
