"""Fixtures for the server tests: the responder (swap it here) and a live server."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from server.app import create_app
from server.settings import Settings
from streaming.pipeline import ResponderSettings, load_responder
from streaming.responder import Responder
from streaming.scheduler import ScheduleSettings
from tests.server.espeak_responder import FixedReplyResponder
from tests.support.presets import shipped_responder
from tests.support.serving import running


@pytest.fixture
def responder() -> Responder:
    """The responder behind every server test. Replace this fixture to run against the model."""
    return FixedReplyResponder()


# A reply of the tiny random model: long enough for a second or more of speech, short enough
# that 16 sessions finish quickly on two cores. Random weights rarely close their reasoning: the
# reasoning budget closes it, so that every reply has reasoning and a spoken answer.
MODEL_REPLY_TOKENS = 40
MODEL_REASONING_TOKENS = 12


@pytest.fixture
async def model_responder(tiny_checkpoint: Path) -> AsyncIterator[Responder]:
    """The real model side: the tiny checkpoint through the torch engine and espeak-ng."""
    responder = load_responder(
        tiny_checkpoint,
        device="cpu",
        dtype="float32",
        max_sequences=16,
        max_seq_len=1024,
        settings=ResponderSettings(
            max_output_tokens=MODEL_REPLY_TOKENS,
            schedule=ScheduleSettings(reasoning_budget=MODEL_REASONING_TOKENS),
        ),
    )
    yield responder
    await responder.close()


@pytest.fixture
async def shipped() -> AsyncIterator[Responder]:
    """The shipped embedded model (tests/support/presets.py)."""
    responder = shipped_responder()
    yield responder
    await responder.close()


ServerFactory = Callable[..., contextlib.AbstractAsyncContextManager[str]]


@pytest.fixture
def make_server(responder: Responder) -> ServerFactory:
    """`async with make_server(settings, responder_=...) as address:` a live server."""

    def factory(settings: Settings | None = None, responder_: Responder | None = None) -> Any:
        return running(create_app(responder_ or responder, settings or Settings()))

    return factory
