"""Choosing the dialect by name: `client_for("live", url)` is a `LiveClient`, and
`dialect_url` moves a server's URL to the other dialect's endpoint."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from step_realtime_client.client import RealtimeClient, SpeechClient
from step_realtime_client.gpt_live import LiveClient

DIALECTS: dict[str, type[SpeechClient]] = {"realtime": RealtimeClient, "live": LiveClient}
ENDPOINTS = {"realtime": "/v1/realtime", "live": "/v1/live/sessions"}


def client_for(dialect: str, url: str, **options: Any) -> SpeechClient:
    """A client of `dialect` ("realtime" or "live") for the server at `url` (either dialect's
    endpoint: see `dialect_url`); `options` as its class takes them."""
    try:
        client_class = DIALECTS[dialect]
    except KeyError:
        raise ValueError(f"unknown dialect {dialect!r}; choose from {sorted(DIALECTS)}") from None
    return client_class(dialect_url(url, dialect), **options)


def dialect_url(url: str, dialect: str) -> str:
    """`url` at `dialect`'s endpoint of the same server, where it names one of the endpoints
    (after any prefix of a proxy); any other URL is taken as given."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    for endpoint in ENDPOINTS.values():
        if path.endswith(endpoint):
            path = path.removesuffix(endpoint) + ENDPOINTS[dialect]
            return urlunsplit(parts._replace(path=path))
    return url
