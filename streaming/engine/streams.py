"""The token stream both engines hand out: tokens pushed from an engine's own thread, through
the caller's event loop (`loop.call_soon_threadsafe`), into an asyncio queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from streaming.engine.base import EngineError, SequenceOutput, TokenStream


class _End:
    """Queued after a stream's last token."""


_END = _End()


class QueuedTokenStream(TokenStream):
    """One sequence's tokens. `receive` runs on the caller's event loop only."""

    def __init__(self, seq_id: int) -> None:
        self.seq_id = seq_id
        self._output = SequenceOutput(seq_id)
        self._queue: asyncio.Queue[int | _End] = asyncio.Queue()
        self._error: BaseException | None = None

    @property
    def output(self) -> SequenceOutput:
        return self._output

    async def __aiter__(self) -> AsyncIterator[int]:
        while True:
            item = await self._queue.get()
            if isinstance(item, _End):
                self._queue.put_nowait(item)  # so that iterating an ended stream again ends too
                if self._error is not None:
                    raise EngineError(f"sequence {self.seq_id} failed") from self._error
                return
            yield item

    def receive(
        self,
        tokens: Sequence[int],
        reason: str | None = None,
        error: BaseException | None = None,
        cached_tokens: int | None = None,
    ) -> None:
        """New tokens and/or the end of the stream (ignored once it has ended)."""
        if self._output.finish_reason is not None:
            return
        if cached_tokens is not None and self._output.cached_tokens is None:
            self._output.cached_tokens = cached_tokens
        for token in tokens:
            self._output.token_ids.append(token)
            self._queue.put_nowait(token)
        if reason is not None:
            self._output.finish_reason = reason
            self._error = error
            self._queue.put_nowait(_END)
