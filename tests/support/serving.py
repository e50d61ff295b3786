"""The server in this process: uvicorn on 127.0.0.1 and a free port, run as a task of the
test's event loop; and reading a session's events."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

SERVER_START_TIMEOUT_S = 10.0
EVENT_TIMEOUT_S = 30  # generous: the machine is shared; no test asserts wall-clock times


def local_config(app: Any, **options: Any) -> uvicorn.Config:
    """A uvicorn configuration for `app` on 127.0.0.1 and a free port, without lifespan (the
    tests start what they need), warnings only; `options` add to or override these."""
    defaults: dict[str, Any] = {"log_level": "warning", "lifespan": "off"}
    return uvicorn.Config(app, host="127.0.0.1", port=0, **{**defaults, **options})


class InProcessServer:
    """`server` (a uvicorn Server, or a subclass such as DrainingServer) run as a task:
    `await start()` until it listens, `await stop()`; or `async with`."""

    def __init__(self, server: uvicorn.Server) -> None:
        self.server = server
        self.task: asyncio.Task[None] | None = None
        self.port = 0

    @classmethod
    def of(cls, app: Any) -> InProcessServer:
        return cls(uvicorn.Server(local_config(app)))

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        task = self.task = asyncio.create_task(self.server.serve())
        async with asyncio.timeout(SERVER_START_TIMEOUT_S):
            while not self.server.started:
                if task.done():
                    task.result()  # raises what stopped it
                await asyncio.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task is not None:
            await self.task

    async def __aenter__(self) -> InProcessServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


@contextlib.asynccontextmanager
async def serving(config: uvicorn.Config) -> AsyncIterator[str]:
    """Run a uvicorn server of `config` (port 0: a free one) until the block ends; yields
    'host:port'."""
    async with InProcessServer(uvicorn.Server(config)) as served:
        yield served.address


@contextlib.asynccontextmanager
async def running(app: Any) -> AsyncIterator[str]:
    """Serve `app` on 127.0.0.1 and a free port; yields 'host:port'. Open sessions get a
    second to close when the block ends."""
    async with serving(local_config(app, timeout_graceful_shutdown=1)) as address:
        yield address


async def recv_until(ws: Any, type_: str) -> list[dict]:
    """Events from a websockets client connection up to and including the first `type_`."""
    events = []
    async with asyncio.timeout(EVENT_TIMEOUT_S):
        while True:
            event = json.loads(await ws.recv())
            events.append(event)
            if event["type"] == type_:
                return events
