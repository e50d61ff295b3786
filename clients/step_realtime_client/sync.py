"""A blocking wrapper for scripts: the async client on a private event loop.

    with Client("ws://127.0.0.1:8000/v1/realtime", api_key="sk-...") as client:
        reply = client.ask("question.wav")
        print(reply.transcript)

Between calls the loop is idle, so events queue up unread; nothing is lost. `dialect="live"`
speaks GPT-Live (`LiveClient`) instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from step_realtime_client.audio import WIRE_SAMPLE_RATE
from step_realtime_client.client import DEFAULT_URL, REPLY_TIMEOUT_S, AudioSource
from step_realtime_client.dialects import client_for
from step_realtime_client.events import ServerEvent
from step_realtime_client.reply import Reply


class Client:
    def __init__(
        self, url: str = DEFAULT_URL, *, dialect: str = "realtime", **options: Any
    ) -> None:
        """`options` as the dialect's async client takes them: `api_key`, `session`,
        `backoff`, and `beta` for Realtime."""
        self._async = client_for(dialect, url, **options)
        self._runner = asyncio.Runner()

    @property
    def session(self) -> dict[str, Any]:
        return self._async.session

    def __enter__(self) -> Client:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> dict[str, Any]:
        return self._runner.run(self._async.connect())

    def update_session(self, **session: Any) -> None:
        self._runner.run(self._async.update_session(**session))

    def ask(
        self,
        audio: AudioSource,
        *,
        realtime: bool = True,
        sample_rate: int = WIRE_SAMPLE_RATE,
        on_event: Callable[[ServerEvent], None] | None = None,
        reply_timeout_s: float = REPLY_TIMEOUT_S,
    ) -> Reply:
        return self._runner.run(
            self._async.ask(
                audio,
                realtime=realtime,
                sample_rate=sample_rate,
                on_event=on_event,
                reply_timeout_s=reply_timeout_s,
            )
        )

    def send_audio(self, pcm: np.ndarray, realtime: bool = True) -> None:
        self._runner.run(self._async.stream_audio(pcm, realtime=realtime))

    def send(self, event: dict[str, Any]) -> None:
        self._runner.run(self._async.send(event))

    def events(self, max_wait_s: float | None = None) -> Iterator[ServerEvent]:
        """Server events as they come; stops after `max_wait_s` seconds without one."""
        while True:
            try:
                yield self._runner.run(self._async.next_event(max_wait_s))
            except TimeoutError:
                return

    def close(self) -> None:
        try:
            self._runner.run(self._async.close())
        finally:
            self._runner.close()
