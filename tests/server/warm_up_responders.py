"""TEST responders with a warm-up, for server/startup.py's tests (also in a server process:
`--responder tests.server.warm_up_responders:failing_warm_up`)."""

from __future__ import annotations

import asyncio

from tests.server.espeak_responder import FixedReplyResponder

WARM_UP_S = 1.0  # long enough for a test to see /readyz answer 503 before it ends
FAILURE = "the test engine cannot start"


class WarmUpResponder(FixedReplyResponder):
    """The fixed reply, after a warm-up that waits for `gate` (or `WARM_UP_S`) and then
    succeeds, or raises RuntimeError(FAILURE) with `fail_warm_up`."""

    def __init__(self, gate: asyncio.Event | None = None, fail_warm_up: bool = False) -> None:
        super().__init__()
        self.warm_up_gate = gate
        self.fail_warm_up = fail_warm_up

    async def warm_up(self) -> None:
        if self.warm_up_gate is not None:
            await self.warm_up_gate.wait()
        else:
            await asyncio.sleep(WARM_UP_S)
        if self.fail_warm_up:
            raise RuntimeError(FAILURE)


def failing_warm_up() -> WarmUpResponder:
    return WarmUpResponder(fail_warm_up=True)
