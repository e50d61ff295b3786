"""The async client: one WebSocket session with a Realtime server.

    async with RealtimeClient(url, api_key="sk-...") as client:
        reply = await client.ask("question.wav")
        print(reply.reasoning, reply.transcript, reply.timings.first_packet_latency)

`SpeechClient` is what every dialect shares (connection, reconnection, audio streaming, `ask`);
`RealtimeClient` speaks OpenAI Realtime, `gpt_live.LiveClient` GPT-Live.

One reader task receives every server event, stamps its arrival time and queues it; `events()`
and `ask()` consume that queue (use one consumer at a time). When the connection drops, the
reader reconnects with exponential backoff and queues a `Reconnected` event: the new connection
is a new server session, so a reply in flight is lost and `ask()` raises `ConnectionLost`.

A server draining for a restart (SIGTERM) closes a session once its reply is done, with the
`error` event `server_shutting_down` and close 1012: the reader reconnects to the same URL, where
a balancer sends it to another server; while a draining server refuses new sessions (that error,
then close 1013), `connect()` and the reconnection try again with the backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from step_realtime_client.audio import (
    WIRE_SAMPLE_RATE,
    encode_pcm16,
    load_audio,
    silence,
    speech_end,
    to_wire,
)
from step_realtime_client.errors import (
    SERVER_SHUTTING_DOWN,
    AuthenticationError,
    ConnectionLost,
    NoSpeechDetected,
    RealtimeError,
    ServerError,
    ServerRefused,
    close_error,
    error_for,
    handshake_error,
)
from step_realtime_client.events import (
    ErrorEvent,
    Reconnected,
    ServerEvent,
    SessionEvent,
    SpeechStarted,
    parse_event,
)
from step_realtime_client.reply import Reply, ReplyCollector

DEFAULT_URL = "ws://127.0.0.1:8000/v1/realtime"
BETA_HEADER = ("OpenAI-Beta", "realtime=v1")
KEY_SUBPROTOCOL_PREFIX = "openai-insecure-api-key."
CHUNK_MS = 40  # audio per append message: small enough for real-time pacing, few messages
OPEN_TIMEOUT_S = 10.0  # TCP + WebSocket handshake
FIRST_EVENT_TIMEOUT_S = 10.0  # handshake -> session.created
REPLY_TIMEOUT_S = 120.0  # end of the question -> response.done
# With server turn detection, speech must be heard this long after the question's audio has
# been sent at the latest, or the audio held none (a silent or too quiet file).
NO_SPEECH_GRACE_S = 3.0
# The client shows reasoning: it asks the server for the reasoning stream.
REASONING_INCLUDE = "response.reasoning_text"
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# Silence sent after a question in fast mode: the server's default silence window (500 ms)
# plus a margin, so that its turn detection closes the turn.
FAST_TRAILING_SILENCE_MS = 800
# How long a real-time `ask` keeps streaming silence (as a live microphone would) while it
# waits for the reply; beyond that it stops feeding the socket and only waits.
LISTEN_SILENCE_MAX_S = 60.0
# Close codes after which reconnecting cannot help: normal end, bad key or policy.
FINAL_CLOSE_CODES = {1000, 1008}


@dataclass(frozen=True)
class Backoff:
    """Reconnection policy: delays of base * 2**n seconds, capped, with +-25 % jitter."""

    attempts: int = 5  # 0 disables reconnection
    base_s: float = 0.25
    max_s: float = 8.0

    def delay(self, attempt: int) -> float:
        return float(min(self.max_s, self.base_s * 2**attempt) * random.uniform(0.75, 1.25))


DEFAULT_BACKOFF = Backoff()
AudioSource = str | Path | np.ndarray


class Player(Protocol):
    """Where reply audio is played (a speaker, or a simulation of one): see `live`."""

    def play(self, item_id: str, pcm: np.ndarray) -> None: ...

    def finish(self, item_id: str) -> None:
        """All of this item's audio has arrived."""

    def stop(self) -> tuple[str, int] | None:
        """Stop at once; (item_id, milliseconds played) if a reply was playing, else None."""


@dataclass(frozen=True)
class _Failure:
    """A one-off error from a task of ours, raised once by `next_event`."""

    error: BaseException


class SpeechClient:
    """One session with a speech-to-speech server, in the dialect of a subclass, which says
    how a session starts (`_start_session`), how audio is appended, whether the server closes
    turns, and how its events make a reply (`_new_collector`)."""

    dialect: ClassVar[str]
    subprotocol: ClassVar[str | None] = None  # offered in the WebSocket handshake
    append_event: ClassVar[str]  # the client event that carries input audio
    # whether the server says when it hears speech (`SpeechStarted`): GPT-Live does not
    hears_speech_aloud: ClassVar[bool] = True

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        key_in_subprotocol: bool = False,
        session_settings: dict[str, Any],
        backoff: Backoff = DEFAULT_BACKOFF,
    ) -> None:
        """`api_key` is an API key or a client secret (`ek_...`). `session_settings` are sent
        when the session starts, and again after every reconnection."""
        self.url = url
        self.api_key = api_key
        self.key_in_subprotocol = key_in_subprotocol
        self.session_settings = session_settings
        self.backoff = backoff
        self.session: dict[str, Any] = {}  # the server's latest view of the session
        self.handshake_events: list[dict[str, Any]] = []  # session.created/updated, as sent
        self._ws: ClientConnection | None = None
        # events, then possibly one final error that every later read raises again
        self._queue: asyncio.Queue[ServerEvent | RealtimeError | _Failure] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._closing = False

    # --- connection ----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> dict[str, Any]:
        """Open the session; returns the server's session object. A passing refusal (a
        server that drains for a restart) is tried again with the backoff."""
        self._closing = False
        for attempt in itertools.count():
            try:
                await self._open()
                break
            except ServerRefused as refused:
                if not refused.retryable or attempt >= self.backoff.attempts:
                    raise
            await asyncio.sleep(self.backoff.delay(attempt))
        self._reader = asyncio.create_task(self._read_loop())
        return self.session

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        self._connected.clear()

    def _handshake_headers(self) -> list[tuple[str, str]]:
        if self.api_key and not self.key_in_subprotocol:
            return [("Authorization", f"Bearer {self.api_key}")]
        return []

    def _subprotocols(self) -> list[str]:
        offered = [self.subprotocol] if self.subprotocol else []
        if self.api_key and self.key_in_subprotocol:
            offered.append(KEY_SUBPROTOCOL_PREFIX + self.api_key)
        return offered

    async def _open(self) -> None:
        try:
            ws = await connect(
                self.url,
                additional_headers=self._handshake_headers(),
                subprotocols=self._subprotocols() or None,  # type: ignore[arg-type]
                open_timeout=OPEN_TIMEOUT_S,
                max_size=MAX_MESSAGE_BYTES,
            )
        except InvalidStatus as error:
            raise handshake_error(error) from None
        except (OSError, InvalidHandshake, TimeoutError) as error:
            raise RealtimeError(f"cannot connect to {self.url}: {error}") from None
        self.handshake_events = []
        try:
            await self._start_session(ws)
        except BaseException:
            await ws.close()
            raise
        self._ws = ws
        self._connected.set()

    async def _start_session(self, ws: ClientConnection) -> None:
        """The dialect's start of a session on a new connection, with `session_settings`
        (`handshake_events` gets what the server answered)."""
        raise NotImplementedError

    async def _expect(self, ws: ClientConnection, type_: str) -> None:
        try:
            async with asyncio.timeout(FIRST_EVENT_TIMEOUT_S):
                while True:
                    event = parse_event(json.loads(await ws.recv()), time.monotonic())
                    self.handshake_events.append(event.raw)
                    if isinstance(event, ErrorEvent):
                        raise error_for(event)
                    if isinstance(event, SessionEvent):
                        self.session = event.session
                    if event.type == type_:
                        return
        except ConnectionClosed as closed:
            raise close_error(closed) from None
        except TimeoutError:
            raise RealtimeError(
                f"the server sent no {type_} within {FIRST_EVENT_TIMEOUT_S} s"
            ) from None

    async def _read_loop(self) -> None:
        while True:
            ws = self._ws
            assert ws is not None
            with contextlib.suppress(ConnectionClosed):  # how it closed is read below
                async for message in ws:
                    self._receive(message)
            self._connected.clear()
            if self._closing:
                self._queue.put_nowait(ConnectionLost("the client closed the connection"))
                return
            if ws.close_code in FINAL_CLOSE_CODES or self.backoff.attempts == 0:
                self._queue.put_nowait(
                    ConnectionLost(
                        f"the server closed the session ({ws.close_code}: "
                        f"{ws.close_reason or 'no reason given'})"
                    )
                )
                return
            if not await self._reconnect():
                return

    def _receive(self, message: str | bytes) -> None:
        try:
            data = json.loads(message)
        except ValueError:
            return  # not an event: nothing to act on
        event = parse_event(data, time.monotonic())
        if isinstance(event, SessionEvent):
            self.session = event.session
        self._queue.put_nowait(event)

    async def _reconnect(self) -> bool:
        last: Exception | None = None
        for attempt in range(self.backoff.attempts):
            await asyncio.sleep(self.backoff.delay(attempt))
            try:
                await self._open()
            except AuthenticationError as error:
                self._queue.put_nowait(error)
                return False
            except RealtimeError as error:
                last = error
                continue
            self._queue.put_nowait(
                Reconnected(
                    type="client.reconnected", attempts=attempt + 1, received_at=time.monotonic()
                )
            )
            return True
        self._queue.put_nowait(
            ConnectionLost(
                f"the connection dropped; {self.backoff.attempts} reconnection "
                f"attempts failed, the last with: {last}"
            )
        )
        return False

    # --- sending -------------------------------------------------------------------------

    async def send(self, event: dict[str, Any]) -> None:
        """Send one client event. Raises `ConnectionLost` while the connection is down."""
        if not self._connected.is_set() or self._ws is None:
            raise ConnectionLost("not connected", reconnected=False)
        try:
            await self._ws.send(json.dumps(event))
        except ConnectionClosed:
            raise ConnectionLost("the connection dropped while sending") from None

    async def update_session(self, **session: Any) -> None:
        """Send `session.update` (both dialects call it so; GPT-Live's changes the delegation
        only); the fields are also re-applied after a reconnection."""
        self.session_settings.update(session)
        await self.send({"type": "session.update", "session": session})

    async def append_audio(self, pcm: np.ndarray) -> None:
        """Append int16 mono 24 kHz audio to the input (one message)."""
        await self.send({"type": self.append_event, "audio": encode_pcm16(pcm)})

    async def stream_audio(
        self,
        pcm: np.ndarray,
        *,
        realtime: bool = True,
        mark_sample: int | None = None,
    ) -> float | None:
        """Send int16 24 kHz audio in CHUNK_MS appends, paced as `stream_chunks` does."""
        return await self.stream_chunks(chunks_of(pcm), realtime=realtime, mark_sample=mark_sample)

    async def stream_chunks(
        self,
        chunks: Iterable[np.ndarray],
        *,
        realtime: bool = True,
        mark_sample: int | None = None,
        on_mark: Callable[[float], None] | None = None,
    ) -> float | None:
        """Send int16 24 kHz chunks, one append each. In real time each leaves when a
        microphone would have captured its last sample, on one clock for the whole stream.
        Returns when the chunk holding sample `mark_sample` was sent (time.monotonic()), or
        None without a mark; `on_mark` gets that time as soon as it is known."""
        started = time.monotonic()
        sent = 0  # samples
        marked_at: float | None = None
        for chunk in chunks:
            sent += len(chunk)
            if realtime:
                delay = started + sent / WIRE_SAMPLE_RATE - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await self.append_audio(chunk)
            if marked_at is None and mark_sample is not None and mark_sample <= sent:
                marked_at = time.monotonic()
                if on_mark is not None:
                    on_mark(marked_at)
        return marked_at

    # --- receiving -----------------------------------------------------------------------

    async def next_event(self, max_wait_s: float | None = None) -> ServerEvent:
        """The next server event; raises what the reader hit (`ConnectionLost`, ...)."""
        async with asyncio.timeout(max_wait_s):
            item = await self._queue.get()
        if isinstance(item, _Failure):
            raise item.error
        if isinstance(item, RealtimeError):
            self._queue.put_nowait(item)  # final: every later call sees it too
            raise item
        return item

    async def events(self) -> AsyncIterator[ServerEvent]:
        """Every server event until the connection ends for good."""
        while True:
            try:
                yield await self.next_event()
            except ConnectionLost:
                return

    def drain(self) -> list[ServerEvent]:
        """Take the events already queued, without waiting."""
        taken: list[ServerEvent] = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, RealtimeError):
                self._queue.put_nowait(item)
                break
            if isinstance(item, _Failure):
                continue
            taken.append(item)
        return taken

    @property
    def server_closes_turns(self) -> bool:
        """Whether the server's turn detection ends the question (else the client does)."""
        return True

    # --- one question, one reply ---------------------------------------------------------

    async def ask(
        self,
        audio: AudioSource,
        *,
        realtime: bool = True,
        sample_rate: int = WIRE_SAMPLE_RATE,
        on_event: Callable[[ServerEvent], None] | None = None,
        reply_timeout_s: float = REPLY_TIMEOUT_S,
    ) -> Reply:
        """Speak a question and collect the reply. `audio` is a file (WAV, FLAC...), or
        samples at `sample_rate`: int16 or float in [-1, 1], mono or (frames, channels).

        With server turn detection the question is followed by silence, as from a microphone,
        until the server closes the turn; without it the client commits and asks for a reply.
        """
        if isinstance(audio, (str, Path)):
            pcm = load_audio(audio)
        elif audio.dtype == np.int16 and audio.ndim == 1 and sample_rate == WIRE_SAMPLE_RATE:
            pcm = audio
        else:
            pcm = to_wire(audio, sample_rate)
        collector = self._new_collector()
        speaker = asyncio.create_task(self._speak_question(pcm, realtime, collector))
        speaker.add_done_callback(self._report_failure)
        speech_by_s = None
        if self.server_closes_turns and self.hears_speech_aloud:
            speech_by_s = (len(pcm) / WIRE_SAMPLE_RATE if realtime else 0.0) + NO_SPEECH_GRACE_S
        try:
            await self._collect(collector, on_event, reply_timeout_s, speech_by_s)
        except NoSpeechDetected:
            await self._discard_unheard_input()  # not heard: not the next question's
            raise
        finally:
            speaker.cancel()
            with contextlib.suppress(asyncio.CancelledError, RealtimeError):
                await speaker
        return collector.reply

    def _new_collector(self) -> ReplyCollector:
        return ReplyCollector()

    async def _discard_unheard_input(self) -> None:
        """Drop audio the server holds but did not hear as speech (where it can say so)."""

    async def _end_question(self) -> None:
        """Close the question's turn and ask for the reply, where the server does not."""
        raise NotImplementedError

    def _report_failure(self, task: asyncio.Task[None]) -> None:
        """Wake the consumer with a sender's unexpected error (a dropped connection is
        reported by the reader instead)."""
        if task.cancelled() or isinstance(task.exception(), ConnectionLost):
            return
        if task.exception() is not None:
            self._queue.put_nowait(_Failure(task.exception()))  # type: ignore[arg-type]

    async def _speak_question(
        self, pcm: np.ndarray, realtime: bool, collector: ReplyCollector
    ) -> None:
        manual = not self.server_closes_turns
        if manual:
            chunks: Iterable[np.ndarray] = chunks_of(pcm)
        elif realtime:  # a live microphone: silence goes on while the reply comes
            chunks = itertools.chain(chunks_of(pcm), _silence_while(lambda: not collector.done))
        else:  # just enough silence for the server's turn detection to close the turn
            chunks = chunks_of(np.concatenate([pcm, silence(FAST_TRAILING_SILENCE_MS)]))

        def mark(sent_at: float) -> None:
            collector.reply.timings.speech_end_sent_at = sent_at  # the reply may start over

        end_sample = speech_end(pcm) or len(pcm)
        await self.stream_chunks(chunks, realtime=realtime, mark_sample=end_sample, on_mark=mark)
        if manual:
            await self._end_question()

    async def _collect(
        self,
        collector: ReplyCollector,
        on_event: Callable[[ServerEvent], None] | None,
        reply_timeout_s: float,
        speech_by_s: float | None = None,
    ) -> None:
        """Events until the reply is complete. With `speech_by_s`, the server must hear speech
        within that many seconds, or `NoSpeechDetected` is raised."""
        started = time.monotonic()
        deadline = started + reply_timeout_s
        heard_by = None if speech_by_s is None else started + speech_by_s
        while not collector.done:
            wait_until = deadline if heard_by is None else min(deadline, heard_by)
            try:
                event = await self.next_event(max(0.0, wait_until - time.monotonic()))
            except TimeoutError:
                if heard_by is not None and time.monotonic() >= heard_by:
                    raise NoSpeechDetected(
                        "the server heard no speech in the audio: check that the file holds "
                        "speech and is loud enough"
                    ) from None
                raise RealtimeError(f"no complete reply within {reply_timeout_s:g} s") from None
            if isinstance(event, SpeechStarted):
                heard_by = None
            if event.received_at < started:
                continue  # left over from before this question
            if isinstance(event, Reconnected):
                raise ConnectionLost(
                    "the connection dropped during the reply; a new session is open, ask again",
                    reconnected=True,
                )
            collector.feed(event)
            if on_event is not None:
                on_event(event)
            if isinstance(event, ErrorEvent) and event.code != SERVER_SHUTTING_DOWN:
                raise ServerError(event)
            # server_shutting_down: the server closes this session now and the reader
            # reconnects; the next event says how that went (Reconnected: ConnectionLost)

    async def barge_in(self, player: Player) -> tuple[str, int] | None:
        """Stop playback at once and tell the server what was played of the assistant's item
        (the server cancels the response if it is still in progress). Returns (item_id, ms
        played), or None when nothing was playing."""
        stopped = player.stop()
        if stopped is not None:
            await self._played(*stopped)
        return stopped

    async def _played(self, item_id: str, audio_end_ms: int) -> None:
        """The listener heard `audio_end_ms` of this item and no more (where the dialect can
        say so: a GPT-Live server cuts the reply to what could have played by its own clock)."""


class RealtimeClient(SpeechClient):
    """OpenAI Realtime (GA, or beta with `beta=True`), with step-realtime's reasoning
    events: the client asks for them in the session settings."""

    dialect = "realtime"
    subprotocol = "realtime"
    append_event = "input_audio_buffer.append"

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        beta: bool = False,
        key_in_subprotocol: bool = False,
        session: dict[str, Any] | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
    ) -> None:
        """`session` is sent as a `session.update` right after connecting."""
        super().__init__(
            url,
            api_key=api_key,
            key_in_subprotocol=key_in_subprotocol,
            session_settings={"include": [REASONING_INCLUDE], **(session or {})},
            backoff=backoff,
        )
        self.beta = beta

    def _handshake_headers(self) -> list[tuple[str, str]]:
        return super()._handshake_headers() + ([BETA_HEADER] if self.beta else [])

    async def _start_session(self, ws: ClientConnection) -> None:
        """Wait for session.created, then apply the settings and wait for their answer."""
        await self._expect(ws, "session.created")
        if self.session_settings:
            await ws.send(json.dumps({"type": "session.update", "session": self.session_settings}))
            await self._expect(ws, "session.updated")

    @property
    def turn_detection(self) -> dict[str, Any] | None:
        """The session's turn detection (None: manual commit), GA or beta shape."""
        if "audio" in self.session:
            found = self.session["audio"].get("input", {}).get("turn_detection")
        else:
            found = self.session.get("turn_detection")
        return dict(found) if found else None

    @property
    def server_closes_turns(self) -> bool:
        return self.turn_detection is not None

    async def commit(self) -> None:
        await self.send({"type": "input_audio_buffer.commit"})

    async def create_response(self, **response: Any) -> None:
        event: dict[str, Any] = {"type": "response.create"}
        if response:
            event["response"] = response
        await self.send(event)

    async def cancel_response(self) -> None:
        await self.send({"type": "response.cancel"})

    async def truncate(self, item_id: str, audio_end_ms: int) -> None:
        """Tell the server the listener heard `audio_end_ms` of this item and no more. It
        answers `conversation.item.truncated`."""
        await self.send(
            {
                "type": "conversation.item.truncate",
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": int(audio_end_ms),
            }
        )

    async def _played(self, item_id: str, audio_end_ms: int) -> None:
        await self.truncate(item_id, audio_end_ms)

    async def _end_question(self) -> None:
        await self.commit()
        await self.create_response()

    async def _discard_unheard_input(self) -> None:
        await self.send({"type": "input_audio_buffer.clear"})


def chunks_of(pcm: np.ndarray, chunk_ms: int = CHUNK_MS) -> Iterator[np.ndarray]:
    step = WIRE_SAMPLE_RATE * chunk_ms // 1000
    for begin in range(0, len(pcm), step):
        yield pcm[begin : begin + step]


def _silence_while(going_on: Callable[[], bool]) -> Iterator[np.ndarray]:
    """CHUNK_MS silences while `going_on()`, for at most LISTEN_SILENCE_MAX_S."""
    quiet = silence(CHUNK_MS)
    for _ in range(int(LISTEN_SILENCE_MAX_S * 1000 / CHUNK_MS)):
        if not going_on():
            return
        yield quiet
