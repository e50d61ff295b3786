"""Fixtures for the browser tests: Playwright, and the real server with the embedded default
model on 127.0.0.1 (one without keys, one with keys behind the example backend)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from benchmarks.server_process import free_port
from tests.web.browser import Process, example_backend, realtime_server, require_browser

API_KEY = "sk-web-test"
KEYED_MAX_SESSIONS = 1  # so that one held session makes the server full


@pytest.fixture(scope="session")
def playwright() -> Iterator[Any]:
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def open_server() -> Iterator[Process]:
    """The server as `step-realtime serve` runs it on a laptop: no keys, loopback."""
    with realtime_server() as server:
        yield server


@dataclass
class KeyedDeployment:
    server: Process  # the realtime server, with API keys
    backend: Process  # examples/web_backend.py, holding the key, serving the page
    api_key: str


@pytest.fixture(scope="session")
def keyed() -> Iterator[KeyedDeployment]:
    """A server with API keys (at most one session) and the example backend serving the page."""
    backend_port = free_port()
    args = [
        "--api-keys",
        API_KEY,
        "--max-sessions",
        str(KEYED_MAX_SESSIONS),
        "--allowed-origins",
        f"http://127.0.0.1:{backend_port}",
    ]
    with (
        realtime_server(args) as server,
        example_backend(server.url, API_KEY, backend_port) as backend,
    ):
        yield KeyedDeployment(server, backend, API_KEY)
