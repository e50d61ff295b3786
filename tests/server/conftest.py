"""Fixtures for the server tests: the responder (swap it here) and a live server."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest

from server.app import create_app
from server.settings import Settings
from streaming.responder import Responder
from tests.server.espeak_responder import FixedReplyResponder
from tests.server.helpers import running


@pytest.fixture
def responder() -> Responder:
    """The responder behind every server test. Replace this fixture to run against the model."""
    return FixedReplyResponder()


ServerFactory = Callable[..., contextlib.AbstractAsyncContextManager[str]]


@pytest.fixture
def make_server(responder: Responder) -> ServerFactory:
    """`async with make_server(settings, responder_=...) as address:` a live server."""

    def factory(settings: Settings | None = None, responder_: Responder | None = None) -> Any:
        return running(create_app(responder_ or responder, settings or Settings()))

    return factory
