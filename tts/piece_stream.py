"""The stream shared by the backends: text in, pieces normalised and spoken in order, chunks out.

`feed` cuts the text into pieces at once (`ClauseSegmenter`); one task per stream normalises
each piece and hands it to the backend's `_synthesise`, which puts `AudioChunk`s as audio comes.
`cancel` cancels that task (the backend's cleanup stops its synthesiser) and ends iteration: no
chunk is yielded after it returns.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from tts.base import AudioChunk, SpeechStream
from tts.normalize import Spoken, normalize
from tts.segment import ClauseSegmenter, Piece


class PieceStream(SpeechStream):
    """feed -> pieces -> normalised -> `_synthesise` (per backend) -> chunks, in order."""

    def __init__(self) -> None:
        self._segmenter = ClauseSegmenter()
        self._text = ""  # everything fed: word timings point into it
        self._pieces: asyncio.Queue[Piece | None] = asyncio.Queue()
        self._chunks: asyncio.Queue[AudioChunk | BaseException | None] = asyncio.Queue()
        self._audio_ms = 0.0  # audio timeline of the response so far
        self._task: asyncio.Task[None] | None = None
        self._flushed = False
        self._cancelled = False

    def feed(self, text: str) -> None:
        if self._flushed or self._cancelled:
            raise RuntimeError("feed after flush or cancel")
        self._text += text
        self._enqueue(self._segmenter.feed(text))

    def flush(self) -> None:
        if self._flushed or self._cancelled:
            return
        self._flushed = True
        self._enqueue([*self._segmenter.flush(), None])

    async def cancel(self) -> None:
        self._cancelled = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task  # the worker has stopped and is back in the pool
        self._chunks.put_nowait(None)

    def __aiter__(self) -> AsyncIterator[AudioChunk]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[AudioChunk]:
        self._start()
        while not self._cancelled:
            item = await self._chunks.get()
            if item is None or self._cancelled:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def _enqueue(self, pieces: Sequence[Piece | None]) -> None:
        for piece in pieces:
            self._pieces.put_nowait(piece)
        if pieces:
            self._start()

    def _start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._synthesise_pieces())

    async def _synthesise_pieces(self) -> None:
        try:
            while (piece := await self._pieces.get()) is not None:
                spoken = normalize(piece.text, piece.start)
                if spoken.text:
                    await self._synthesise(spoken, piece.end_pause)
            self._finish()
            self._chunks.put_nowait(None)
        except Exception as exc:  # handed to the consumer of the stream
            self._chunks.put_nowait(exc)

    @abc.abstractmethod
    async def _synthesise(self, spoken: Spoken, end_pause: bool) -> None:
        """Speak one normalised piece: `_put` its chunks, advance `_audio_ms`."""

    def _finish(self) -> None:
        """After the last piece: put any audio still held."""

    def _put(self, chunk: AudioChunk) -> None:
        self._chunks.put_nowait(chunk)
