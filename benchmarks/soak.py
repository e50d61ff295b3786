"""Soak: 32 sessions of spoken turns, with barge-ins and random disconnects, for a bounded time.

Each simulated user talks to one server (the embedded default model, in its own process, run
as `step-realtime serve` runs it: `server.edge.server_config`) over its own WebSocket, streaming
held-out spoken arithmetic questions in real time. Each turn is, at random:
- a plain turn: the question, then the reply to `response.done`;
- a barge-in: a question, and a second question spoken over the first reply once its audio
  flows (the first must end `cancelled` or `completed`, the second is the turn);
- a disconnect: a question, and the socket dropped (no close frame) as soon as the reply
  starts or speaks; the user reconnects with a new session.

It reports lost turns (a question that got no `response.done` with a reply, an `error` event, or
a connection the server ended: must be 0; a reply cut because the question went on after a
pause is a split turn, counted apart, and the question's end must still get its reply), wrong
answers (the reply's transcript states
another number than the question's result), the server process's RSS at the start, after the
warm-up and at the end (growth after warm-up: target under 5%), and what is left in the server
once every client has gone: engine sequences and asyncio tasks beyond those of an idle server
(both must be 0).

    python -m benchmarks.soak                 # 32 users for 10 minutes
    python -m benchmarks.soak --quick         # 32 users for 1 minute
    python -m benchmarks.soak --users 8 --minutes 3 --out /tmp/soak.json

Prints a table and writes benchmarks/results/soak.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.server_process import free_port, server_process

RESULTS = Path(__file__).parent / "results"
DEFAULT_USERS = 32
DEFAULT_MINUTES = 10.0
QUICK_MINUTES = 1.0
WARM_UP_FRACTION = 0.2  # RSS "after warm-up" is taken this far into the run
RSS_EVERY_S = 30.0  # the server's RSS is also sampled this often, for the curve
QUESTIONS = 24  # distinct held-out questions (voices and phrasings never trained on)
QUESTION_SEED = 2000  # the held-out set of benchmarks/arith_e2e.py
APPEND_MS = 100  # a microphone-like append, sent in real time
TRAILING_SILENCE_MS = 900  # past the server's 500 ms silence window: the turn closes
TURN_TIMEOUT_S = 180.0  # a reply that has not ended by then is lost (32 users on 2 cores)
SETTLE_TIMEOUT_S = 60.0  # after the clients leave: time for the server to wind down
BARGE_IN_SHARE = 0.2
DISCONNECT_SHARE = 0.15
PAUSE_S = (0.3, 1.5)  # a user's pause between turns
# A dropped session frees its slot once the server has noticed and wound it down: headroom, so
# that a user who reconnects at once is not refused (a refusal is counted and retried).
SPARE_SESSIONS = 8
RECONNECT_WAIT_S = 1.0
ALLOCATOR_VARIABLES = ("MALLOC_ARENA_MAX", "ONEDNN_PRIMITIVE_CACHE_CAPACITY")
WIRE_RATE = 24_000
MODEL_RATE = 16_000


# --- questions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    text: str
    expected: int
    appends: tuple[str, ...]  # input_audio_buffer.append messages, APPEND_MS each


def questions() -> list[Question]:
    """Held-out spoken questions as 24 kHz PCM16 appends, with the silence that ends a turn."""
    import soxr

    from streaming.arith.data import make_utterance, speak

    made: list[Question] = []
    index = 0
    while len(made) < QUESTIONS:
        utterance = make_utterance("eval", index, seed=QUESTION_SEED)
        index += 1
        if utterance.problem is None:
            continue
        wave = soxr.resample(speak(utterance, seed=QUESTION_SEED), MODEL_RATE, WIRE_RATE)
        pcm = np.clip(wave * 32767, -32768, 32767).astype("<i2")
        pcm = np.concatenate([pcm, np.zeros(WIRE_RATE * TRAILING_SILENCE_MS // 1000, "<i2")])
        step = WIRE_RATE * APPEND_MS // 1000
        messages = tuple(
            json.dumps(
                {
                    "type": "input_audio_buffer.append",
                    "audio": base64.b64encode(pcm[i : i + step].tobytes()).decode(),
                }
            )
            for i in range(0, len(pcm), step)
        )
        made.append(Question(utterance.text, utterance.problem.result, messages))
    return made


# --- one user ------------------------------------------------------------------------------


@dataclass
class Tally:
    turns: int = 0
    lost: int = 0
    wrong: int = 0
    barge_ins: int = 0
    disconnects: int = 0
    sessions: int = 0
    refused_connects: int = 0
    # a pause inside a question ended the turn early: its reply was cut by the rest of the
    # question (`cancelled`, `turn_detected`) and the question's end got the reply
    split_turns: int = 0
    connect_problems: list[str] = field(default_factory=list)  # the first few
    statuses: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # the first few lost turns, explained
    wrong_examples: list[str] = field(default_factory=list)  # the first few wrong answers
    # turns and wrong answers by the turn's place in its session: the first, or a later one
    # (the embedded model was trained with at most one turn of history)
    by_place: dict[str, list[int]] = field(
        default_factory=lambda: {"first": [0, 0], "later": [0, 0]}
    )

    def lose(self, why: str) -> None:
        self.lost += 1
        if len(self.problems) < 20:
            self.problems.append(why)


class Lost(Exception):
    """The turn got no proper reply."""


class User:
    """One WebSocket session; a reader task puts every server event on a queue."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ws: Any = None
        self.events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.reader: asyncio.Task[None] | None = None
        self.answered = 0  # turns answered in this session

    async def connect(self) -> None:
        from websockets.asyncio.client import connect

        self.ws = await connect(self.url, max_size=None)
        self.answered = 0
        self.events = asyncio.Queue()
        self.reader = asyncio.create_task(self._read())
        created = await self.next_event(30.0)
        if created["type"] != "session.created":
            raise Lost(f"first event {created['type']}")

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for message in self.ws:
                self.events.put_nowait(json.loads(message))
        self.events.put_nowait(None)  # the connection ended

    async def next_event(self, wait_s: float) -> dict[str, Any]:
        event = await asyncio.wait_for(self.events.get(), wait_s)
        if event is None:
            raise Lost("the server ended the connection")
        if event["type"] == "error":
            raise Lost(f"error {event['error'].get('code')}: {event['error'].get('message')}")
        return event

    async def say(self, question: Question) -> None:
        for message in question.appends:
            await self.ws.send(message)
            await asyncio.sleep(APPEND_MS / 1000)

    async def until(self, wanted: set[str], deadline: float) -> dict[str, Any]:
        while True:
            event = await self.next_event(max(0.1, deadline - time.monotonic()))
            if event["type"] in wanted:
                return event

    async def final_reply(self, deadline: float, tally: Tally) -> dict[str, Any]:
        """The reply to the question just said: replies cut because the question went on after
        a pause (a split turn) are counted and skipped."""
        while True:
            response = await self.reply(deadline)
            if not _split(response):
                return response
            tally.split_turns += 1

    async def reply(self, deadline: float) -> dict[str, Any]:
        """Events up to the next `response.done`; returns it with the reply's transcript."""
        transcript = ""
        while True:
            event = await self.next_event(max(0.1, deadline - time.monotonic()))
            if event["type"] == "response.output_audio_transcript.delta":
                transcript += event["delta"]
            elif event["type"] == "response.done":
                return {**event["response"], "transcript": transcript}

    def drop(self) -> None:
        """Vanish: no close frame."""
        if self.ws is not None:
            self.ws.transport.abort()

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 10)
        if self.reader is not None:
            self.reader.cancel()
            await asyncio.gather(self.reader, return_exceptions=True)


def judge(tally: Tally, user: User, question: Question, response: dict[str, Any]) -> None:
    from streaming.arith.data import answer_number

    status = response["status"]
    tally.statuses[status] = tally.statuses.get(status, 0) + 1
    if status not in ("completed", "incomplete"):
        tally.lose(f"reply {status}: {response.get('status_details')}")
        return
    tally.turns += 1
    place = tally.by_place["first" if user.answered == 0 else "later"]
    user.answered += 1
    place[0] += 1
    if answer_number(response["transcript"]) != question.expected:
        tally.wrong += 1
        place[1] += 1
        if len(tally.wrong_examples) < 20:
            tally.wrong_examples.append(f"{question.text!r} -> {response['transcript']!r}")


async def plain_turn(user: User, question: Question, tally: Tally) -> None:
    await user.say(question)
    judge(tally, user, question, await user.final_reply(time.monotonic() + TURN_TIMEOUT_S, tally))


async def barge_in_turn(user: User, first: Question, second: Question, tally: Tally) -> None:
    deadline = time.monotonic() + TURN_TIMEOUT_S
    await user.say(first)
    created = await user.until({"response.created"}, deadline)
    speaking = await user.until({"response.output_audio.delta", "response.done"}, deadline)
    while speaking["type"] == "response.done" and _split(speaking["response"]):
        tally.split_turns += 1  # the first question went on after a pause: its next reply
        created = await user.until({"response.created"}, deadline)
        speaking = await user.until({"response.output_audio.delta", "response.done"}, deadline)
    tally.barge_ins += 1
    if speaking["type"] == "response.done":  # the first reply ended before it could be cut
        judge(tally, user, first, {**speaking["response"], "transcript": _text(speaking)})
        await plain_turn(user, second, tally)
        return
    talking = asyncio.create_task(user.say(second))
    try:
        cut = await user.reply(deadline)
        if cut["id"] != created["response"]["id"] or cut["status"] not in (
            "cancelled",
            "completed",
        ):
            tally.lose(f"barged-in reply ended {cut['status']}")
            return
        await talking
        judge(tally, user, second, await user.final_reply(deadline, tally))
    finally:
        talking.cancel()
        await asyncio.gather(talking, return_exceptions=True)


async def disconnect_turn(user: User, question: Question, rng: random.Random) -> None:
    await user.say(question)
    wanted = rng.choice(["response.created", "response.output_audio.delta"])
    with contextlib.suppress(Lost, TimeoutError):
        await user.until({wanted, "response.done"}, time.monotonic() + TURN_TIMEOUT_S)
    user.drop()


def _split(response: dict[str, Any]) -> bool:
    details = response.get("status_details") or {}
    return response["status"] == "cancelled" and details.get("reason") == "turn_detected"


def _text(done_event: dict[str, Any]) -> str:
    for item in done_event["response"].get("output", []):
        for part in item.get("content", []):
            if part.get("transcript"):
                return str(part["transcript"])
    return ""


async def simulated_user(
    index: int, url: str, pool: list[Question], deadline: float, tally: Tally
) -> None:
    rng = random.Random(index)
    await asyncio.sleep(rng.uniform(0, 3))  # users do not all arrive at once
    user = User(url)
    connected = False
    try:
        while time.monotonic() < deadline:
            if not connected:
                try:
                    await user.connect()
                except (Lost, TimeoutError, OSError) as error:
                    tally.refused_connects += 1
                    if len(tally.connect_problems) < 20:
                        tally.connect_problems.append(f"user {index}: {error}")
                    await user.close()
                    await asyncio.sleep(RECONNECT_WAIT_S)
                    continue
                tally.sessions += 1
                connected = True
            question = rng.choice(pool)
            roll = rng.random()
            try:
                if roll < DISCONNECT_SHARE:
                    await disconnect_turn(user, question, rng)
                    tally.disconnects += 1
                    await user.close()
                    connected = False
                elif roll < DISCONNECT_SHARE + BARGE_IN_SHARE:
                    await barge_in_turn(user, question, rng.choice(pool), tally)
                else:
                    await plain_turn(user, question, tally)
            except (Lost, TimeoutError) as error:
                tally.lose(f"user {index}: {type(error).__name__}: {error}")
                await user.close()
                connected = False
            await asyncio.sleep(rng.uniform(*PAUSE_S))
    finally:
        await user.close()


# --- the server ----------------------------------------------------------------------------


def serve(port: int, max_sessions: int) -> None:
    """The server process: the embedded model, `serve`'s uvicorn configuration, and one extra
    route for this benchmark (`/soak/state`: tasks, engine sequences, RSS)."""
    import uvicorn

    from server.app import create_app
    from server.edge import server_config
    from server.logs import configure_logging
    from server.settings import Settings
    from streaming.pipeline import load_responder

    configure_logging("warning")
    responder = load_responder(None, max_sequences=max_sessions)
    settings = Settings(host="127.0.0.1", port=port, max_sessions=max_sessions)
    app = create_app(responder, settings)

    @app.get("/soak/state")
    async def state() -> dict[str, Any]:
        engine = responder.engine
        return {
            "tasks": len(asyncio.all_tasks()),
            "engine_sequences": engine.active_sequences,
            "sessions": app.state.active_sessions,
            "rss_bytes": rss_bytes(os.getpid()),
        }

    uvicorn.Server(server_config(app, settings, log_level="warning")).run()


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def server_state(base: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base}/soak/state", timeout=30) as response:
        return dict(json.loads(response.read()))


def responses_by_status(base: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{base}/metrics", timeout=30) as response:
        text = response.read().decode()
    return {
        sample.labels["status"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "realtime_responses_total"
    }


async def settle(base: str, idle: dict[str, Any]) -> dict[str, Any]:
    """The server's state once it has wound down after the last client (or the timeout)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        now = await asyncio.to_thread(server_state, base)
        quiet = not now["sessions"] and not now["engine_sequences"]
        if (quiet and now["tasks"] <= idle["tasks"]) or time.monotonic() > deadline:
            return now
        await asyncio.sleep(0.5)


# --- the run -------------------------------------------------------------------------------


async def soak(base: str, users: int, seconds: float) -> dict[str, Any]:
    pool = await asyncio.to_thread(questions)
    idle = await asyncio.to_thread(server_state, base)
    url = base.replace("http://", "ws://") + "/v1/realtime"
    started = time.monotonic()
    deadline = started + seconds
    tally = Tally()
    load = [os.getloadavg()[0]]
    warm: dict[str, Any] = {}

    async def warm_up_probe() -> None:
        await asyncio.sleep(seconds * WARM_UP_FRACTION)
        warm.update(await asyncio.to_thread(server_state, base))
        load.append(os.getloadavg()[0])

    series: list[tuple[float, float]] = []

    async def rss_probe() -> None:
        while True:
            await asyncio.sleep(RSS_EVERY_S)
            rss = (await asyncio.to_thread(server_state, base))["rss_bytes"]
            series.append((round(time.monotonic() - started), round(rss / 2**20, 1)))

    probe = asyncio.create_task(warm_up_probe())
    sampler = asyncio.create_task(rss_probe())
    await asyncio.gather(*(simulated_user(i, url, pool, deadline, tally) for i in range(users)))
    elapsed = time.monotonic() - started
    await probe
    sampler.cancel()
    await asyncio.gather(sampler, return_exceptions=True)
    load.append(os.getloadavg()[0])
    end = await settle(base, idle)
    growth = (end["rss_bytes"] - warm["rss_bytes"]) / warm["rss_bytes"]
    return {
        "users": users,
        "seconds": round(elapsed, 1),
        "turns": tally.turns,
        "lost_turns": tally.lost,
        "wrong_answers": tally.wrong,
        "wrong_rate": tally.wrong / max(1, tally.turns),
        "wrong_rate_by_place": {
            place: {"turns": n, "wrong": wrong, "rate": wrong / max(1, n)}
            for place, (n, wrong) in tally.by_place.items()
        },
        "barge_ins": tally.barge_ins,
        "disconnects": tally.disconnects,
        "sessions": tally.sessions,
        "refused_connects": tally.refused_connects,
        "split_turns": tally.split_turns,
        "reply_statuses_seen": tally.statuses,
        "server_responses_by_status": await asyncio.to_thread(responses_by_status, base),
        "rss_mb": {
            "start": idle["rss_bytes"] / 2**20,
            "after_warm_up": warm["rss_bytes"] / 2**20,
            "end": end["rss_bytes"] / 2**20,
        },
        "rss_growth_after_warm_up": growth,
        "rss_series_mb": series,  # (seconds into the run, MB)
        "engine_sequences_left": end["engine_sequences"],
        "tasks_left": end["tasks"] - idle["tasks"],
        "sessions_left": end["sessions"],
        "load_average": {"start": load[0], "warm_up": load[1], "end": load[-1]},
        "lost_turn_reasons": tally.problems,
        "wrong_answer_examples": tally.wrong_examples,
        "connect_problems": tally.connect_problems,
    }


def print_table(report: dict[str, Any]) -> None:
    rss = report["rss_mb"]
    rows = [
        ("users", report["users"]),
        ("seconds", report["seconds"]),
        ("sessions opened", report["sessions"]),
        ("connects refused (retried)", report["refused_connects"]),
        ("turns answered", report["turns"]),
        ("barge-ins", report["barge_ins"]),
        ("disconnects", report["disconnects"]),
        ("split turns (question cut by a pause)", report["split_turns"]),
        ("lost turns (must be 0)", report["lost_turns"]),
        ("wrong answers", f"{report['wrong_answers']} ({report['wrong_rate']:.1%})"),
        *(
            (f"  in {place} turns", f"{row['wrong']} of {row['turns']} ({row['rate']:.1%})")
            for place, row in report["wrong_rate_by_place"].items()
        ),
        ("RSS start / warm / end MB", f"{rss['start']:.0f} / {rss['after_warm_up']:.0f} / "
         f"{rss['end']:.0f}"),
        ("RSS growth after warm-up", f"{report['rss_growth_after_warm_up']:+.1%} (target < 5%)"),
        ("engine sequences left", report["engine_sequences_left"]),
        ("tasks left", report["tasks_left"]),
        ("load average start/warm/end", "{start:.1f} / {warm_up:.1f} / {end:.1f}".format(
            **report["load_average"])),
    ]  # fmt: skip
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    for reason in report["lost_turn_reasons"]:
        print(f"  lost: {reason}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=DEFAULT_USERS)
    parser.add_argument("--minutes", type=float, default=DEFAULT_MINUTES)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_MINUTES:g} minute")
    parser.add_argument("--out", type=Path, default=RESULTS / "soak.json")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--max-sessions", type=int, default=DEFAULT_USERS, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        serve(args.port, args.max_sessions)
        return 0
    minutes = QUICK_MINUTES if args.quick else args.minutes
    port = free_port()
    sessions = str(args.users + SPARE_SESSIONS)
    with server_process("benchmarks.soak", port, ["--max-sessions", sessions]):
        report = asyncio.run(soak(f"http://127.0.0.1:{port}", args.users, minutes * 60))
    # the server inherits this environment: allocator settings change its RSS curve
    tuning = {name: os.environ[name] for name in ALLOCATOR_VARIABLES if name in os.environ}
    report = {
        "command": "python -m benchmarks.soak " + " ".join(argv or sys.argv[1:]),
        "allocator_environment": tuning,
        **report,
    }
    print_table(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    ok = not (report["lost_turns"] or report["engine_sequences_left"] or report["tasks_left"])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
