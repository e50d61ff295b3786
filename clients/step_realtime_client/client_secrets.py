"""Short-lived client secrets, minted with an API key for a browser or device to connect with
(`POST /v1/realtime/client_secrets`)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

from step_realtime_client.errors import (
    AuthenticationError,
    RealtimeError,
    ServerRefused,
    error_message,
)

REQUEST_TIMEOUT_S = 10.0
DEFAULT_TTL_S = 600  # the server's own default lifetime of a secret


def http_url(ws_url: str, path: str) -> str:
    """The HTTP(S) URL of `path` on the server of a ws(s):// URL."""
    scheme, rest = ws_url.split("://", 1)
    host = rest.split("/", 1)[0]
    return f"{'https' if scheme == 'wss' else 'http'}://{host}{path}"


def mint_client_secret_sync(
    url: str, api_key: str, ttl_seconds: int = DEFAULT_TTL_S, session: dict[str, Any] | None = None
) -> str:
    """Mint a short-lived client secret (`POST /v1/realtime/client_secrets`) with an API key."""
    body: dict[str, Any] = {"expires_after": {"anchor": "created_at", "seconds": ttl_seconds}}
    if session:
        body["session"] = session
    request = urllib.request.Request(
        http_url(url, "/v1/realtime/client_secrets"),
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
            return str(json.loads(response.read())["value"])
    except urllib.error.HTTPError as error:
        message = error_message(error.read()) or str(error)
        if error.code in (401, 403):
            raise AuthenticationError(f"the server refused the API key: {message}") from None
        raise ServerRefused(
            f"minting a client secret failed (HTTP {error.code}): {message}"
        ) from None
    except OSError as error:
        raise RealtimeError(f"cannot reach {url}: {error}") from None


async def mint_client_secret(
    url: str, api_key: str, ttl_seconds: int = DEFAULT_TTL_S, session: dict[str, Any] | None = None
) -> str:
    return await asyncio.to_thread(mint_client_secret_sync, url, api_key, ttl_seconds, session)
