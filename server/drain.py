"""Draining for rolling upgrades: SIGTERM (what Kubernetes sends) or `POST /admin/drain`.

1. `/readyz` answers 503 with `"status": "draining"`: the balancer stops sending new sessions.
2. New sessions are refused: a WebSocket handshake is accepted, gets the `error` event
   `server_shutting_down` and is closed with 1013 (Try Again Later); a client secret request
   gets HTTP 503. A client (ours does) retries with backoff and lands on another replica.
3. Every open session goes on until it is quiet, then it is closed: the `error` event
   `server_shutting_down`, then close 1012 (Service Restart, uvicorn's own code at shutdown).
   Quiet: no response running or unfinished, its audio played out (at 1x, as the idle clock
   counts it), no turn being spoken and no uncommitted audio of a manual turn. A reply in
   progress is not cut, and a question being asked is still answered.
4. After `--drain-timeout-seconds` the sessions still open are closed the same way, a response
   in progress cancelled first (`response.done` with status `cancelled`).
5. Once no session is left, uvicorn shuts down (listener closed, responder closed) and the
   process exits 0. A second SIGTERM, or SIGINT, stops at once as plain uvicorn does.

The warning goes with the close, not when the drain starts: the OpenAI Realtime protocol has no
"going away" event, and its `error` event is what OpenAI sends before closing a session itself
(`session_expired`). Sent while a reply streams, it would cut that reply for pipecat, which
stops reading a connection at any `error` event but two benign codes; livekit-agents logs it
and goes on, the openai SDK and openai-agents hand it to the application. Sent at a quiet
moment, right before the close, it only explains the close; an invented event type would be
ignored by pipecat and livekit but logged as a validation failure by openai-agents.

`Drain` is the state and the bookkeeping; the sessions (server/connection.py) decide when they
are quiet. `DrainingServer` is uvicorn's server with SIGTERM hooked to the drain.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from types import FrameType
from typing import Protocol

import uvicorn

from server.metrics import Metrics

log = logging.getLogger("server.drain")

CLOSE_SERVICE_RESTART = 1012  # IANA WebSocket close code: the service is restarting
CLOSE_TRY_AGAIN_LATER = 1013  # RFC 6455 registry: try again later (overloaded, restarting)
REFUSED_MESSAGE = (
    "the server is shutting down (draining for a restart) and takes no new sessions; "
    "try again: another server behind the same address will take it"
)
CLOSED_MESSAGE = (
    "the server is shutting down (draining for a restart); reconnect to go on in a new session"
)
# After the bound, how long the closed sessions may take to send their last events (their own
# close waits 5 s for a client that does not read, then aborts the socket).
CLOSE_GRACE_SECONDS = 10.0


class Drainable(Protocol):
    """An open session, as the drain sees it (`server.connection.Connection`)."""

    def drain(self) -> None:
        """The server drains: close at the first quiet moment."""

    def shut_down(self) -> None:
        """The bound is reached: close now, a response in progress included."""


class Drain:
    """Whether the server drains, the sessions it waits for, and when it is over."""

    def __init__(self, timeout_seconds: float, metrics: Metrics | None = None) -> None:
        self.timeout_seconds = timeout_seconds
        self.metrics = metrics
        self.reason: str | None = None  # what started the drain; None while serving
        self.started_at: float | None = None  # time.monotonic()
        self.finished = False  # every session ended (or the bound and its grace passed)
        self._requested: str | None = None
        self._sessions: set[Drainable] = set()
        self._empty = asyncio.Event()  # set while no session is open
        self._empty.set()
        self._task: asyncio.Task[None] | None = None

    @property
    def draining(self) -> bool:
        return self.reason is not None

    @property
    def sessions(self) -> int:
        return len(self._sessions)

    def request(self, reason: str) -> None:
        """Ask for a drain from a signal handler: only a flag, `poll` starts it on the loop
        (a drain already under way goes on as it is)."""
        if self._requested is None:
            self._requested = reason

    def poll(self) -> bool:
        """On the event loop: start a requested drain; True once the drain is over."""
        if self._requested is not None and not self.draining:
            self.start(self._requested)
        return self.finished

    def start(self, reason: str) -> None:
        """Start draining (on the event loop); a second call changes nothing."""
        if self.draining:
            return
        self.reason = reason
        self.started_at = time.monotonic()
        log.info(
            "draining: new sessions refused; %d open, each closed when quiet, at most %g s on",
            len(self._sessions),
            self.timeout_seconds,
            extra={"reason": reason},
        )
        if self.metrics is not None:
            self.metrics.draining.set(1)
        for session in list(self._sessions):
            session.drain()
        self._task = asyncio.create_task(self._run())

    def add(self, session: Drainable) -> None:
        self._sessions.add(session)
        self._empty.clear()

    def discard(self, session: Drainable) -> None:
        self._sessions.discard(session)
        if not self._sessions:
            self._empty.set()

    async def wait(self) -> None:
        """Until the drain is over (it must have started)."""
        assert self._task is not None, "the drain has not started"
        await asyncio.shield(self._task)

    async def _run(self) -> None:
        try:
            if not await self._until_empty(self.timeout_seconds):
                log.info("drain timeout: closing the %d sessions still open", len(self._sessions))
                for session in list(self._sessions):
                    session.shut_down()
                if not await self._until_empty(CLOSE_GRACE_SECONDS):
                    log.warning(
                        "%d sessions still open after the drain's grace; stopping anyway",
                        len(self._sessions),
                    )
        finally:
            self.finished = True
            started = self.started_at or time.monotonic()
            log.info("drained in %.1f s", time.monotonic() - started)

    async def _until_empty(self, seconds: float) -> bool:
        try:
            async with asyncio.timeout(seconds):
                await self._empty.wait()
        except TimeoutError:
            return False
        return True


class DrainingServer(uvicorn.Server):
    """uvicorn's server with SIGTERM draining (module doc) instead of an immediate stop; the
    process then exits 0 (uvicorn would raise the SIGTERM again after its shutdown). It also
    stops once a drain started otherwise (`POST /admin/drain`) is over."""

    def __init__(self, config: uvicorn.Config, drain: Drain) -> None:
        super().__init__(config)
        self.drain = drain
        self._sigterm_seen = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM and not self._sigterm_seen and not self.should_exit:
            self._sigterm_seen = True
            self.drain.request("SIGTERM")  # a signal handler: a flag, the loop does the rest
            return
        super().handle_exit(sig, frame)  # a second SIGTERM, or SIGINT: stop now

    async def on_tick(self, counter: int) -> bool:
        if self.drain.poll():
            return True
        return await super().on_tick(counter)
