"""What every framework client script shares (standard library only: it runs in each framework's
own virtual environment): the JSON-line report, capture of the framework's log records, a
microphone that streams a WAV file in real time followed by silence, a speaker that plays in
real time, and the `calculate` tool's arithmetic.

A client prints one JSON object per line on stdout; the pytest side (tests/frameworks/) reads
them. Each has a "kind": "log" (a framework log record at WARNING or above), "tool_call" (the
framework called our tool), "summary" (what the framework's own state holds at the end), and a
few per-framework kinds.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import logging
import operator
import sys
import time
import traceback
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

RATE = 24_000  # PCM16 mono at 24 kHz, what each framework streams by default
CHUNK_MS = 20  # a microphone-like frame
BYTES_PER_MS = RATE * 2 // 1000
SCENARIOS = ("turn", "tool", "barge_in", "merge")
# How long a client waits for the framework to finish each step before it reports what it has.
# Generous: the machine has two shared cores; no test asserts a wall-clock time.
RESPONSE_TIMEOUT_S = 60.0
TRANSCRIPT_TIMEOUT_S = 10.0  # after the reply, for the user transcript to reach the context
INTERRUPT_TIMEOUT_S = 10.0  # after the user barges in, for the framework to stop the reply
CONNECT_TIMEOUT_S = 30.0
# Barge-in: the user asks again, then speaks over the second reply once this much of it has
# been played, so that it is cut off part-way through (the embedded model's replies last about
# 2.4 s). The second reply, because livekit's AgentSession by default feeds the model silence
# instead of the user's audio for the first 3 s of the agent's speech (its AEC warm-up).
BARGE_IN_AFTER_PLAYED_MS = 800
SETTLE_S = 1.5  # after the last step, for trailing events (truncated, transcripts) to arrive
QUIET_S = 2.0  # merge: no reply audio for this long after the question means the answer is in
MERGE_AFTER_QUIET_S = 1.0  # merge: the paused question starts after this much quiet


def emit(kind: str, **fields: Any) -> None:
    """One report line on stdout."""
    print(json.dumps({"kind": kind, **fields}, default=str), flush=True)


class ReportingHandler(logging.Handler):
    """Forwards log records at WARNING and above to the report, so that the test can assert
    that a normal turn logs no framework error."""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + "".join(traceback.format_exception(*record.exc_info))
        emit("log", level=record.levelname, logger=record.name, message=message)


def capture_logging() -> None:
    """Route the standard `logging` records (livekit, openai-agents, websockets) to the report."""
    root = logging.getLogger()
    root.addHandler(ReportingHandler(level=logging.WARNING))
    root.setLevel(logging.INFO)


def install_excepthook() -> None:
    """Report uncaught exceptions (also in asyncio tasks) as ERROR log lines."""

    def hook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        text = "".join(traceback.format_exception(kind, value, tb))
        emit("log", level="ERROR", logger="uncaught", message=text)

    sys.excepthook = hook


def loop_exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio's handler for exceptions nobody retrieved: report them as ERROR log lines."""
    error = context.get("exception")
    detail = "".join(traceback.format_exception(error)) if error else ""
    emit("log", level="ERROR", logger="asyncio", message=f"{context.get('message')}\n{detail}")


def parse_args(
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", required=True, help="ws://127.0.0.1:PORT of the server")
    parser.add_argument("--scenario", choices=SCENARIOS, required=True)
    parser.add_argument("--question", type=Path, required=True, help="spoken question, WAV")
    parser.add_argument("--barge-in", type=Path, help="what the user says over the reply, WAV")
    parser.add_argument("--paused", type=Path, help="a question with a pause in it, WAV")
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    if args.scenario == "barge_in" and args.barge_in is None:
        parser.error("--scenario barge_in needs --barge-in WAV")
    if args.scenario == "merge" and args.paused is None:
        parser.error("--scenario merge needs --paused WAV")
    return args


def read_wav(path: Path) -> bytes:
    """PCM16 mono 24 kHz samples of a WAV file; a clear error for any other format."""
    with wave.open(str(path), "rb") as wav:
        shape = (wav.getnchannels(), wav.getsampwidth(), wav.getframerate())
        if shape != (1, 2, RATE):
            raise SystemExit(f"{path}: need mono PCM16 at {RATE} Hz, got {shape}")
        return wav.readframes(wav.getnframes())


class Microphone:
    """Streams PCM16 in real time, CHUNK_MS at a time: what `say` queues, silence otherwise, as
    a real microphone never stops sending."""

    def __init__(self) -> None:
        self._pending = bytearray()
        self.closed = False

    def say(self, pcm: bytes) -> None:
        self._pending.extend(pcm)

    @property
    def speaking(self) -> bool:
        return bool(self._pending)

    async def chunks(self) -> AsyncIterator[bytes]:
        size = CHUNK_MS * BYTES_PER_MS
        start = time.monotonic()
        sent = 0
        while not self.closed:
            chunk = bytes(self._pending[:size])
            del self._pending[:size]
            yield chunk + bytes(size - len(chunk))
            sent += 1
            # paced by the clock, not by sleeps, so that slow iterations do not drift
            await asyncio.sleep(max(0.0, start + sent * CHUNK_MS / 1000 - time.monotonic()))


class Speaker:
    """Plays audio in real time (without a sound card): it knows at each moment how much of
    the reply being played has been heard, which is what a client truncates the reply to."""

    def __init__(self) -> None:
        self.item: object = None  # the reply being played (each framework names it its own way)
        self.received_ms = 0.0  # of that reply
        self._drained_at = 0.0  # monotonic time at which all received audio has been played
        self._written_at = time.monotonic()  # of the last audio received

    def write(self, pcm: bytes, item: object) -> None:
        now = time.monotonic()
        self._written_at = now
        if item != self.item:
            self.item, self.received_ms = item, 0.0
            self._drained_at = max(self._drained_at, now)
        self._drained_at = max(self._drained_at, now) + len(pcm) / BYTES_PER_MS / 1000
        self.received_ms += len(pcm) / BYTES_PER_MS

    @property
    def queued_ms(self) -> float:
        return max(0.0, self._drained_at - time.monotonic()) * 1000

    @property
    def played_ms(self) -> float:
        return max(0.0, self.received_ms - self.queued_ms)

    @property
    def quiet_for_s(self) -> float:
        """Since audio last came, or since all of it has played, whichever is later."""
        return time.monotonic() - max(self._written_at, self._drained_at)

    @property
    def playing(self) -> bool:
        return self.queued_ms > 0

    def clear(self) -> float:
        """Stop playing: drop what has not been heard; returns the ms of this reply heard."""
        heard = self.played_ms
        self.received_ms = heard
        self._drained_at = time.monotonic()
        return heard


_OPERATORS: dict[type, Callable[..., float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.USub: operator.neg,
}
CALCULATE_DESCRIPTION = "Evaluate an arithmetic expression such as '7 * 6' and return the result."


TOOL_CALLS: list[str] = []  # the expressions `calculate` was called with, in order


def calculate(expression: str) -> str:
    """The tool every framework declares: + - * / on numbers, nothing else; the result as text
    (a whole number without '.0'), or a sentence saying what was wrong."""
    TOOL_CALLS.append(expression)
    try:
        value = _evaluate(ast.parse(expression.replace("x", "*"), mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError) as error:
        return f"cannot evaluate {expression!r}: {error}"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_evaluate(node.left), _evaluate(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_evaluate(node.operand))
    raise ValueError("only numbers and + - * / are allowed")


async def wait_for(predicate: Callable[[], bool], timeout_s: float, poll_s: float = 0.05) -> bool:
    """Poll `predicate` until it holds or `timeout_s` passes; whether it held."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(poll_s)
    return predicate()


class Progress:
    """What a framework has shown so far, updated by the client's event handlers and read by
    `drive`: replies finished, reply audio interrupted, a user transcript in the context."""

    def __init__(self) -> None:
        self.responses_done = 0
        self.interrupted = False
        self.user_transcript = ""


async def drive(
    args: argparse.Namespace, mic: Microphone, speaker: Speaker, progress: Progress
) -> None:
    """Speak the question (`parse_args`' WAVs) into `mic`, then wait for what the scenario needs
    to have happened; each wait is bounded and reported as a "step" line (the test asserts on
    the outcome)."""
    scenario = args.scenario
    question = read_wav(args.question)
    barge_in = read_wav(args.barge_in) if args.barge_in else None
    mic.say(question)
    if scenario == "barge_in":
        assert barge_in is not None
        first = await wait_for(lambda: progress.responses_done >= 1, RESPONSE_TIMEOUT_S)
        await wait_for(lambda: not speaker.playing, RESPONSE_TIMEOUT_S)
        emit("step", name="first_reply_played", ok=first, played_ms=speaker.played_ms)
        first_reply = speaker.item
        mic.say(question)
        heard = await wait_for(
            lambda: speaker.item != first_reply and speaker.played_ms >= BARGE_IN_AFTER_PLAYED_MS,
            RESPONSE_TIMEOUT_S,
        )
        emit("step", name="second_reply_playing", ok=heard, played_ms=speaker.played_ms)
        mic.say(barge_in)
        emit("step", name="barge_in_spoken", reply_received_ms=speaker.received_ms)
        stopped = await wait_for(lambda: progress.interrupted, INTERRUPT_TIMEOUT_S)
        emit("step", name="reply_interrupted", ok=stopped, played_ms=speaker.played_ms)
    if scenario == "merge":
        # The paused question comes second, once the first reply has played: livekit's
        # AgentSession ignores the user for the first 3 s of its first speech (AEC warm-up).
        first = await wait_for(
            lambda: progress.responses_done >= 1 and speaker.received_ms > 0, RESPONSE_TIMEOUT_S
        )
        await wait_for(lambda: speaker.quiet_for_s >= MERGE_AFTER_QUIET_S, RESPONSE_TIMEOUT_S)
        emit("step", name="first_reply_played", ok=first, played_ms=speaker.played_ms)
        replies_before = progress.responses_done
        mic.say(read_wav(args.paused))
        await wait_for(lambda: not mic.speaking, RESPONSE_TIMEOUT_S)
        done = await wait_for(
            lambda: progress.responses_done > replies_before and speaker.quiet_for_s >= QUIET_S,
            RESPONSE_TIMEOUT_S,
        )
        emit("step", name="answered", ok=done, count=progress.responses_done)
        await asyncio.sleep(SETTLE_S)
        return
    # a turn is one reply; a tool call is a reply with the call, then one that speaks its result
    # (unless the model answered without calling it); a barge-in: a reply, the cut one, the next
    done = await wait_for(lambda: progress.responses_done >= 1, RESPONSE_TIMEOUT_S)
    if scenario == "barge_in":
        done = await wait_for(lambda: progress.responses_done >= 3, RESPONSE_TIMEOUT_S)
    elif scenario == "tool" and TOOL_CALLS:
        done = await wait_for(lambda: progress.responses_done >= 2, RESPONSE_TIMEOUT_S)
    emit("step", name="responses_done", ok=done, count=progress.responses_done)
    await wait_for(lambda: not speaker.playing, RESPONSE_TIMEOUT_S)
    found = await wait_for(lambda: bool(progress.user_transcript), TRANSCRIPT_TIMEOUT_S)
    emit("step", name="user_transcript", ok=found, transcript=progress.user_transcript)
    await asyncio.sleep(SETTLE_S)
