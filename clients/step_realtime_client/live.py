"""Live conversation: a microphone in, a speaker out, barge-in between them.

`converse()` streams the microphone to the server without pause and plays every reply. When the
server hears the user start speaking (`input_audio_buffer.speech_started`) while a reply is still
playing, playback stops at once and the client truncates the assistant's item at what was
played, so the server's history holds only what the user heard (the server has already
cancelled the response itself when `interrupt_response` is on). With GPT-Live (`LiveClient`)
the server keeps its speech events and its own count of what played: it stops the voice and
cuts the reply by itself, and the client plays what arrives (the server sends it at the pace it
plays, so little is left to play after a barge-in).

The microphone and speaker come from `sounddevice` (the `audio` extra); `SimulatedPlayer` and
any async iterator of audio chunks stand in for them in tests and benchmarks.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np

from step_realtime_client.audio import WIRE_SAMPLE_RATE, to_wire
from step_realtime_client.client import CHUNK_MS, Player, SpeechClient
from step_realtime_client.errors import ConnectionLost
from step_realtime_client.events import (
    REPLY_ENDS,
    AudioDelta,
    AudioDone,
    ServerEvent,
    SpeechStarted,
)

DEVICE_HINT = (
    "the microphone and speaker need the audio extra: pip install 'step-realtime-client[audio]' "
    "(and the PortAudio library, e.g. apt install libportaudio2)"
)
MIC_QUEUE_CHUNKS = 250  # 10 s of 40 ms chunks: beyond that the network is hopelessly behind


class DeviceError(RuntimeError):
    """No sounddevice, no PortAudio, or no usable audio device."""


class SimulatedPlayer:
    """Plays in wall-clock time without a device: what a speaker would have played by now
    (starting at the first chunk, ignoring any gaps)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.item_id: str | None = None
        self._started = 0.0
        self._samples = 0
        self._finished = False
        self._stopped: set[str] = set()  # late audio of these items is not played

    def play(self, item_id: str, pcm: np.ndarray) -> None:
        if item_id in self._stopped:
            return
        if item_id != self.item_id:
            self.item_id, self._started, self._samples = item_id, self._clock(), 0
            self._finished = False
        self._samples += len(pcm)

    def finish(self, item_id: str) -> None:
        if item_id == self.item_id:
            self._finished = True

    def played_ms(self) -> int:
        received_ms = self._samples * 1000 // WIRE_SAMPLE_RATE
        return min(received_ms, int((self._clock() - self._started) * 1000))

    def stop(self) -> tuple[str, int] | None:
        if self.item_id is None:
            return None
        played, item_id = self.played_ms(), self.item_id
        still_playing = not self._finished or played < self._samples * 1000 // WIRE_SAMPLE_RATE
        self.item_id = None
        self._stopped.add(item_id)
        return (item_id, played) if still_playing else None


def _sounddevice() -> Any:
    try:
        import sounddevice
    except ImportError:
        raise DeviceError(DEVICE_HINT) from None
    except OSError as error:  # the wheel is there but PortAudio is not
        raise DeviceError(f"{error}; {DEVICE_HINT}") from None
    return sounddevice


class PlaybackBuffer:
    """Reply audio queued for an audio device: how much of which item has been played, and
    a stop that drops the rest at once. `fill` runs on the device's thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[tuple[str, np.ndarray]] = deque()
        self._last: str | None = None  # the item whose audio was written out last
        self._played: dict[str, int] = {}  # samples played, per item
        self._finished: set[str] = set()  # all of their audio has arrived
        self._stopped: set[str] = set()  # late audio of these items is not played

    def play(self, item_id: str, pcm: np.ndarray) -> None:
        with self._lock:
            if item_id not in self._stopped:
                self._queue.append((item_id, pcm))
                self._played.setdefault(item_id, 0)

    def finish(self, item_id: str) -> None:
        with self._lock:
            self._finished.add(item_id)

    def fill(self, out: np.ndarray) -> int:
        """Write the next samples into `out` (silence where there are none); how many."""
        filled = 0
        with self._lock:
            while filled < len(out) and self._queue:
                item_id, chunk = self._queue[0]
                take = min(len(out) - filled, len(chunk))
                out[filled : filled + take] = chunk[:take]
                filled += take
                self._played[item_id] += take
                self._last = item_id
                if take == len(chunk):
                    self._queue.popleft()
                else:
                    self._queue[0] = (item_id, chunk[take:])
        out[filled:] = 0
        return filled

    def stop(self) -> tuple[str, int] | None:
        with self._lock:
            if self._queue:
                playing: str | None = self._queue[0][0]
            elif self._last is not None and self._last not in self._finished | self._stopped:
                playing = self._last  # starved, waiting for more of it
            else:
                playing = None
            self._stopped.update(item_id for item_id, _ in self._queue)
            self._queue.clear()
            if playing is None:
                return None
            self._stopped.add(playing)
            return playing, self._played[playing] * 1000 // WIRE_SAMPLE_RATE


class SpeakerPlayer:
    """The default (or a named) output device, playing from a `PlaybackBuffer`."""

    def __init__(self, device: int | str | None = None) -> None:
        sd = _sounddevice()
        self.buffer = PlaybackBuffer()
        try:
            self._stream = sd.OutputStream(
                samplerate=WIRE_SAMPLE_RATE,
                channels=1,
                dtype="int16",
                device=device,
                callback=lambda outdata, *_: self.buffer.fill(outdata[:, 0]),
            )
            self._stream.start()
        except Exception as error:  # PortAudioError, or ValueError for a bad device
            raise DeviceError(f"cannot open the speaker: {error}") from None

    def play(self, item_id: str, pcm: np.ndarray) -> None:
        self.buffer.play(item_id, pcm)

    def finish(self, item_id: str) -> None:
        self.buffer.finish(item_id)

    def stop(self) -> tuple[str, int] | None:
        return self.buffer.stop()

    def close(self) -> None:
        self._stream.close()


async def microphone(device: int | str | None = None) -> AsyncIterator[np.ndarray]:
    """The default input device as int16 24 kHz chunks of CHUNK_MS."""
    sd = _sounddevice()
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[np.ndarray] = asyncio.Queue(MIC_QUEUE_CHUNKS)

    def offer(chunk: np.ndarray) -> None:  # on the loop
        with contextlib.suppress(asyncio.QueueFull):  # the sender is hopelessly behind: drop
            queue.put_nowait(chunk)

    def captured(indata: np.ndarray, *_: Any) -> None:  # on PortAudio's thread
        with contextlib.suppress(RuntimeError):  # the loop has closed
            loop.call_soon_threadsafe(offer, indata[:, 0].copy())

    try:
        info = sd.query_devices(device, "input")
        rate = int(info["default_samplerate"])
        stream = sd.InputStream(
            samplerate=rate,
            channels=1,
            dtype="float32",
            device=device,
            blocksize=rate * CHUNK_MS // 1000,
            callback=captured,
        )
        stream.start()
    except Exception as error:  # PortAudioError, or ValueError: no such device
        raise DeviceError(f"cannot open the microphone: {error}") from None
    try:
        while True:
            yield to_wire(await queue.get(), rate)
    finally:
        stream.close()


async def converse(
    client: SpeechClient,
    mic: AsyncIterator[np.ndarray],
    player: Player,
    on_event: Callable[[ServerEvent], None] | None = None,
    *,
    until: Callable[[ServerEvent], bool] | None = None,
) -> None:
    """Stream `mic` to the server and play the replies, with barge-in, until `until(event)`
    is true, the microphone ends and its last reply is done, or the connection ends.
    A microphone that fails (no device) raises here."""
    sender = asyncio.create_task(_send_all(client, mic))
    listener = asyncio.create_task(_play_replies(client, player, sender, on_event, until))
    try:
        done, _ = await asyncio.wait({sender, listener}, return_when=asyncio.FIRST_COMPLETED)
        if sender in done and sender.exception() is not None:
            raise sender.exception()  # type: ignore[misc]
        await listener
    finally:
        for task in (sender, listener):
            task.cancel()
        await asyncio.gather(sender, listener, return_exceptions=True)


async def _play_replies(
    client: SpeechClient,
    player: Player,
    sender: asyncio.Task[None],
    on_event: Callable[[ServerEvent], None] | None,
    until: Callable[[ServerEvent], bool] | None,
) -> None:
    async for event in client.events():
        if isinstance(event, AudioDelta):
            player.play(event.item_id, event.pcm16())
        elif isinstance(event, AudioDone):
            player.finish(event.item_id)
        elif isinstance(event, SpeechStarted):
            await client.barge_in(player)
        if on_event is not None:
            on_event(event)
        if until is not None and until(event):
            return
        if sender.done() and isinstance(event, REPLY_ENDS):
            return


async def _send_all(client: SpeechClient, mic: AsyncIterator[np.ndarray]) -> None:
    async for chunk in mic:
        with contextlib.suppress(ConnectionLost):  # audio said while reconnecting is lost
            await client.append_audio(chunk)
