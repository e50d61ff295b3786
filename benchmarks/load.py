"""Load: N simulated users talking to one server at once, measured from the client side.

Each user has its own WebSocket session and speaks real speech (espeak-ng questions, several
voices and rates) in real time, as a microphone would: the question, then silence while the
reply arrives and plays, then a natural pause, then the next question. Per turn it records
first-packet latency (end of the question's speech as sent -> first audio delta), response
time (-> response.done), audio underruns (gaps where real-time playback of the reply would
starve), errors and cancellations. The server's own split comes from its `/metrics`, read
before and after each level.

    python -m benchmarks.load                          # own server (default model), N = 1..32
    python -m benchmarks.load --model PATH --users 1,4,16 --turns 3
    python -m benchmarks.load --url ws://HOST:PORT/v1/realtime --api-key KEY
    python -m benchmarks.load --quick                  # a smoke run: N = 1,2, one turn each
    python -m benchmarks.load --runs 3                 # figures are medians of 3 sweeps
    python -m benchmarks.load --dialect realtime,live  # the same turns in both dialects

Prints a table, writes benchmarks/results/load.json and load.png (latency percentiles vs
concurrency with the target line). Loopback only when it starts its own server; the server
runs in its own process, so the load generator does not share its event loop or GIL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import os
import random
import statistics
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "clients"))  # the client's source

from benchmarks.server_process import free_port, server_process  # noqa: E402
from step_realtime_client import RealtimeError, SpeechClient, client_for, dialect_url  # noqa: E402
from step_realtime_client.audio import WIRE_SAMPLE_RATE, silence, to_wire  # noqa: E402
from step_realtime_client.client import CHUNK_MS  # noqa: E402
from step_realtime_client.client_secrets import http_url  # noqa: E402
from step_realtime_client.gpt_live import backend_delegation  # noqa: E402
from step_realtime_client.reply import Reply  # noqa: E402

RESULTS = Path(__file__).parent / "results"
DEFAULT_USERS = (1, 2, 4, 8, 16, 32)
QUICK_USERS = (1, 2)
DEFAULT_TURNS = 3
DEFAULT_PAUSE_S = 1.5  # mean pause between a reply's end and the next question
LEVEL_TIME_LIMIT_S = 180.0  # no new turn starts after this; bounds one level's time
TURN_TIMEOUT_S = 120.0  # one reply, end of question -> response.done
# The published Step-Audio-R1 Realtime figure; the server's gauge wins when it exports one.
TARGET_S = 0.92
PERCENTILES = (50, 95, 99)
QUESTIONS = (
    "What is seven times six?",
    "What is twelve plus nine?",
    "What is fifty minus eighteen?",
    "What is eight times eight?",
    "What is one hundred divided by four?",
    "What is thirteen plus twenty nine?",
)
VOICES = (("en-us", 175), ("en-gb", 160), ("en-us", 200), ("en-gb", 185))
LEADING_SILENCE_MS = 400
LAG_PROBE_S = 0.01  # the load generator's own event-loop lag is sampled this often


@dataclass(frozen=True)
class Endpoint:
    """What the simulated users talk to: a server, in one dialect."""

    url: str
    dialect: str = "realtime"
    engine: str | None = None  # the own server's (None: a --url server)
    vad: str | None = None


# --- speech --------------------------------------------------------------------------------


def spoken_questions() -> list[np.ndarray]:
    """Every question in every voice, 24 kHz int16, with the silence a microphone picks up."""
    from tts.espeak import synthesize

    lead = silence(LEADING_SILENCE_MS)
    spoken = []
    for i, text in enumerate(QUESTIONS):
        voice, rate = VOICES[i % len(VOICES)]
        pcm, native_rate, _ = synthesize(text, voice, rate_wpm=rate)
        spoken.append(np.concatenate([lead, to_wire(pcm, native_rate)]))
    return spoken


# --- one user ------------------------------------------------------------------------------


@dataclass
class TurnResult:
    user: int
    turn: int
    ok: bool
    status: str = ""
    error: str = ""
    first_packet_s: float | None = None
    endpoint_s: float | None = None
    server_s: float | None = None
    response_s: float | None = None
    audio_s: float = 0.0
    underruns: int = 0
    underrun_s: float = 0.0


def turn_result(user: int, turn: int, reply: Reply) -> TurnResult:
    t = reply.timings
    gaps = reply.underruns()
    has_audio = t.first_audio_at is not None
    error = "" if has_audio else "no audio in the reply"
    # an answer cut at the token cap still measured every latency: it counts as a success
    if reply.status not in ("completed", "incomplete"):
        details = reply.status_details or {}
        reason = details.get("reason") or details.get("error") or "no reason given"
        error = f"reply {reply.status}: {reason}"
    return TurnResult(
        user,
        turn,
        ok=not error,
        status=reply.status,
        error=error,
        first_packet_s=t.first_packet_latency,
        endpoint_s=t.endpoint_delay,
        server_s=t.server_latency,
        response_s=t.response_time,
        audio_s=reply.audio_seconds,
        underruns=len(gaps),
        underrun_s=sum(g.gap_s for g in gaps),
    )


async def simulated_user(
    user: int,
    endpoint: Endpoint,
    api_key: str | None,
    session: dict[str, Any],
    questions: list[np.ndarray],
    turns: int,
    pause_s: float,
    deadline: float,
) -> list[TurnResult]:
    rng = random.Random(user)
    results: list[TurnResult] = []
    await asyncio.sleep(rng.uniform(0, pause_s))  # users do not all start in the same instant
    try:
        client = client_for(endpoint.dialect, endpoint.url, api_key=api_key, session=session)
        await client.connect()
    except RealtimeError as error:
        return [TurnResult(user, 0, ok=False, error=f"connect: {error}")]
    try:
        for turn in range(turns):
            if time.monotonic() > deadline:
                break
            question = questions[(user + turn) % len(questions)]
            try:
                reply = await client.ask(question, reply_timeout_s=TURN_TIMEOUT_S)
            except RealtimeError as error:
                results.append(
                    TurnResult(user, turn, ok=False, error=type(error).__name__ + f": {error}")
                )
                continue
            results.append(turn_result(user, turn, reply))
            await listen_then_pause(client, reply, rng.uniform(0.5, 1.5) * pause_s)
    finally:
        await client.close()
    return results


async def listen_then_pause(client: SpeechClient, reply: Reply, pause_s: float) -> None:
    """The user hears the rest of the reply, then pauses; the microphone streams silence."""
    first = reply.timings.first_audio_at or time.monotonic()
    remaining = max(0.0, first + reply.audio_seconds - time.monotonic())
    quiet_ms = int((remaining + pause_s) * 1000) // CHUNK_MS * CHUNK_MS
    with contextlib.suppress(RealtimeError):
        await client.stream_audio(silence(quiet_ms))
        client.drain()  # what came meanwhile (session events) is not a reply


# --- server metrics ------------------------------------------------------------------------


def scrape(metrics_url: str) -> dict[str, Any]:
    """Histogram buckets, sums and counts of the realtime_* metrics, keyed by labels."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(metrics_url, timeout=10) as response:
            text = response.read().decode()
    except OSError:
        return {}
    samples: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            samples[json.dumps(key)] = sample.value
    return samples


def histogram_delta(
    before: dict[str, Any], after: dict[str, Any], name: str, label: tuple[str, str] | None = None
) -> list[tuple[float, float]]:
    """(upper bound, count) of a histogram's buckets added between two scrapes, summed over
    the other labels."""
    buckets: dict[float, float] = {}
    for key, value in after.items():
        sample_name, labels = json.loads(key)
        labels = dict(labels)
        if sample_name != f"{name}_bucket":
            continue
        if label is not None and labels.get(label[0]) != label[1]:
            continue
        bound = float(labels["le"])
        buckets[bound] = buckets.get(bound, 0.0) + value - before.get(key, 0.0)
    return sorted(buckets.items())


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus' histogram_quantile: linear within the bucket holding the quantile."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            width = count - lower_count
            fraction = (rank - lower_count) / width if width else 1.0
            return lower_bound + (bound - lower_bound) * fraction
        lower_bound, lower_count = bound, count
    return None


def server_split(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The server's view of one level: its FPL percentiles and the mean of every stage."""
    if not after:
        return {}
    fpl = histogram_delta(before, after, "realtime_first_audio_latency_seconds")
    split: dict[str, Any] = {
        f"first_audio_p{p}_s": histogram_quantile(p / 100, fpl) for p in PERCENTILES
    }
    stages: dict[str, float] = {}
    for key, value in after.items():
        name, labels = json.loads(key)
        if name == "realtime_stage_seconds_sum":
            stage = dict(labels)["stage"]
            count_key = json.dumps(["realtime_stage_seconds_count", labels])
            count = after.get(count_key, 0.0) - before.get(count_key, 0.0)
            if count > 0:
                stages[stage] = (value - before.get(key, 0.0)) / count
    split["stage_mean_s"] = stages
    return split


def target_from(samples: dict[str, Any]) -> float:
    key = json.dumps(["realtime_first_audio_latency_target_seconds", []])
    return float(samples.get(key, TARGET_S))


# --- levels --------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float | None:
    return float(np.percentile(values, p)) if values else None


def summarize(
    n_users: int, results: list[TurnResult], wall_s: float, server: dict[str, Any]
) -> dict[str, Any]:
    ok = [r for r in results if r.ok]
    fpl = [r.first_packet_s for r in ok if r.first_packet_s is not None]
    response = [r.response_s for r in ok if r.response_s is not None]
    endpoint = [r.endpoint_s for r in ok if r.endpoint_s is not None]
    summary: dict[str, Any] = {
        "users": n_users,
        "turns": len(results),
        "succeeded": len(ok),
        "success_rate": len(ok) / len(results) if results else 0.0,
        "errors": sum(1 for r in results if r.error),
        "cancelled": sum(1 for r in results if r.status == "cancelled"),
        "incomplete": sum(1 for r in results if r.status == "incomplete"),
        "underruns_per_turn": statistics.fmean([r.underruns for r in ok]) if ok else None,
        "underrun_s_per_turn": statistics.fmean([r.underrun_s for r in ok]) if ok else None,
        "endpoint_p50_s": percentile(endpoint, 50),
        "wall_s": wall_s,
        "server": server,
    }
    for p in PERCENTILES:
        summary[f"first_packet_p{p}_s"] = percentile(fpl, p)
        summary[f"response_p{p}_s"] = percentile(response, p)
    summary["error_examples"] = sorted({r.error for r in results if r.error})[:5]
    return summary


async def run_level(
    n_users: int,
    endpoint: Endpoint,
    api_key: str | None,
    session: dict[str, Any],
    questions: list[np.ndarray],
    turns: int,
    pause_s: float,
    time_limit_s: float,
) -> tuple[dict[str, Any], list[TurnResult]]:
    metrics_url = http_url(endpoint.url, "/metrics")
    before = await asyncio.to_thread(scrape, metrics_url)
    started = time.monotonic()
    deadline = started + time_limit_s
    lags: list[float] = []
    monitor = asyncio.create_task(watch_loop_lag(lags))
    per_user = await asyncio.gather(
        *(
            simulated_user(u, endpoint, api_key, session, questions, turns, pause_s, deadline)
            for u in range(n_users)
        )
    )
    monitor.cancel()
    wall = time.monotonic() - started
    after = await asyncio.to_thread(scrape, metrics_url)
    results = [r for user in per_user for r in user]
    summary = summarize(n_users, results, wall, server_split(before, after))
    summary["client_loop_lag_p99_s"] = percentile(lags, 99)
    summary["per_turn"] = [asdict(r) for r in results]
    return summary, results


async def watch_loop_lag(lags: list[float]) -> None:
    """How late this process's event loop wakes up: when the load generator itself is the
    bottleneck, its arrival times (and so its latencies) are late by about this much."""
    while True:
        asked = time.monotonic()
        await asyncio.sleep(LAG_PROBE_S)
        lags.append(time.monotonic() - asked - LAG_PROBE_S)


# --- output --------------------------------------------------------------------------------


def fmt(value: float | None, scale: float = 1.0, digits: int = 3) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


def print_table(levels: list[dict[str, Any]]) -> None:
    head = (
        "users",
        "turns",
        "ok%",
        "FPL p50",
        "p95",
        "p99",
        "resp p50",
        "p95",
        "p99",
        "endpt p50",
        "underruns/turn",
        "srv FPL p50",
        "srv p95",
        "errors",
        "cancel",
        "cut",
        "lag p99",
    )
    print(" ".join(f"{h:>9}" for h in head))
    for s in levels:
        server = s.get("server", {})
        row = (
            s["users"],
            s["turns"],
            fmt(s["success_rate"], 100, 0),
            fmt(s["first_packet_p50_s"]),
            fmt(s["first_packet_p95_s"]),
            fmt(s["first_packet_p99_s"]),
            fmt(s["response_p50_s"]),
            fmt(s["response_p95_s"]),
            fmt(s["response_p99_s"]),
            fmt(s["endpoint_p50_s"]),
            fmt(s["underruns_per_turn"], digits=2),
            fmt(server.get("first_audio_p50_s")),
            fmt(server.get("first_audio_p95_s")),
            s["errors"],
            s["cancelled"],
            s["incomplete"],
            fmt(s.get("client_loop_lag_p99_s")),
        )
        print(" ".join(f"{str(v):>9}" for v in row))
    print(
        "seconds; FPL = first audio delta - end of question speech as sent (client); "
        "srv = the server's own histogram; cut = replies ended by the token cap;\n"
        "lag = the load generator's own event-loop lag (when large, client figures are late)"
    )
    for s in levels:
        stages = s.get("server", {}).get("stage_mean_s") or {}
        if stages:
            parts = ", ".join(f"{k} {v:.3f}" for k, v in sorted(stages.items()))
            print(f"  N={s['users']}: server stage means: {parts}")
        for example in s["error_examples"]:
            print(f"  N={s['users']}: error: {example}")


def plot(levels: list[dict[str, Any]], target_s: float, path: Path, serving: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    users = [s["users"] for s in levels]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for p, style in zip(PERCENTILES, ("o-", "s--", "^:"), strict=True):
        values = [s[f"first_packet_p{p}_s"] for s in levels]
        ax.plot(users, [math.nan if v is None else v for v in values], style, label=f"p{p}")
    server = [s.get("server", {}).get("first_audio_p50_s") for s in levels]
    if any(v is not None for v in server):
        ax.plot(
            users,
            [math.nan if v is None else v for v in server],
            "x-.",
            label="server p50 (histogram)",
        )
    ax.axhline(target_s, color="red", linewidth=1, label=f"target {target_s:g} s")
    ax.set_xlim(min(users) / 1.5, max(users) * 1.5)  # also when no level had a success
    ax.set_xscale("log", base=2)
    ax.set_xticks(users, [str(u) for u in users])
    ax.set_ylim(bottom=0)
    ax.set_xlabel("concurrent users")
    ax.set_ylabel("first-packet latency (s)")
    ax.set_title(f"First-packet latency vs concurrency (client side)\n{serving}", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --- the server under test -----------------------------------------------------------------


def serve(
    model: str | None,
    responder_spec: str | None,
    port: int,
    max_sessions: int,
    tts_backend: str = "espeak",
    engine: str = "torch",
    vad: str | None = None,
) -> None:
    """The server process: the model's responder (or `module:factory`'s) on loopback."""
    import importlib

    import uvicorn

    from server.app import create_app
    from server.settings import Settings
    from streaming.pipeline import load_responder

    if responder_spec:
        module, _, factory = responder_spec.partition(":")
        responder = getattr(importlib.import_module(module), factory)()
    else:
        responder = load_responder(
            model, max_sequences=max_sessions, tts_backend=tts_backend, engine=engine
        )
    settings = Settings(host="127.0.0.1", port=port, max_sessions=max_sessions)
    if vad is not None:
        settings = dataclasses.replace(settings, vad=vad)
    uvicorn.run(create_app(responder, settings), host="127.0.0.1", port=port, log_level="warning")


@contextlib.contextmanager
def own_server(
    model: str | None,
    responder: str | None,
    max_sessions: int,
    tts_backend: str = "espeak",
    engine: str = "torch",
    vad: str | None = None,
) -> Any:
    port = free_port()
    args = ["--max-sessions", str(max_sessions), "--tts-backend", tts_backend]
    args += ["--model", model] if model else []
    args += ["--responder", responder] if responder else []
    args += ["--engine", engine]
    args += ["--vad", vad] if vad else []
    with server_process("benchmarks.load", port, args):
        wait_warm(f"http://127.0.0.1:{port}/readyz")
        yield f"ws://127.0.0.1:{port}/v1/realtime"


ENGINE_WARM_UP_TIMEOUT_S = 600.0  # a vLLM start (workers, weights, compilation) on a busy box


def wait_warm(readyz: str) -> None:
    """Until /readyz says 200: the engine has warmed up (a vLLM start takes a while)."""
    deadline = time.monotonic() + ENGINE_WARM_UP_TIMEOUT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(readyz, timeout=2):
            return
        time.sleep(0.5)
    raise SystemExit(f"the server was not ready within {ENGINE_WARM_UP_TIMEOUT_S:g} s")


# --- entry point ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="target this server instead of starting one")
    parser.add_argument("--api-key", default=os.environ.get("STEP_REALTIME_API_KEY"))
    parser.add_argument("--model", help="checkpoint for the own server (default model if omitted)")
    parser.add_argument(
        "--responder",
        metavar="MODULE:FACTORY",
        help="own server with this responder instead of a model, e.g. "
        "tests.server.espeak_responder:FixedReplyResponder (protocol and speech "
        "overhead without a model)",
    )
    parser.add_argument(
        "--users",
        default=",".join(map(str, DEFAULT_USERS)),
        help="concurrency levels, comma-separated (default %(default)s)",
    )
    parser.add_argument("--turns", type=int, default=DEFAULT_TURNS, help="questions per user")
    parser.add_argument(
        "--pause", type=float, default=DEFAULT_PAUSE_S, help="mean pause between turns, seconds"
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=LEVEL_TIME_LIMIT_S,
        help="no new turn starts after this many seconds of a level",
    )
    parser.add_argument("--effort", help="session reasoning effort (scheduling mode)")
    parser.add_argument(
        "--max-output-tokens",
        type=int,
        default=256,
        help="cap per reply, so that an untrained model cannot ramble on",
    )
    parser.add_argument(
        "--runs", type=int, default=1, help="repeat the sweep; the table shows medians over runs"
    )
    parser.add_argument("--quick", action="store_true", help="N = 1,2, one turn each")
    parser.add_argument("--name", default="load", help="results file stem (default %(default)s)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--engine",
        default="torch",
        help="own server's engine: torch, vllm, or torch,vllm for both side by side (two "
        "servers, levels taken in turn)",
    )
    parser.add_argument(
        "--vad",
        default=None,
        help="own server's speech classifier: webrtc, silero (default: the server's), or "
        "webrtc,silero for both side by side (old and new default in one run)",
    )
    parser.add_argument(
        "--dialect",
        default="realtime",
        help="the users speak realtime (OpenAI Realtime), live (GPT-Live), or realtime,live: "
        "both side by side, the same questions to the same server",
    )
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--max-sessions", type=int, default=64, help=argparse.SUPPRESS)
    parser.add_argument(
        "--tts-backend", default="espeak", help="own server's speech backend: espeak or piper"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.users, args.turns = ",".join(map(str, QUICK_USERS)), 1
    return args


async def run(args: argparse.Namespace, endpoint: Endpoint) -> list[list[dict[str, Any]]]:
    """Every run's levels: runs[r][level]."""
    return (await run_endpoints(args, {"": endpoint}))[""]


def session_for(dialect: str, args: argparse.Namespace) -> dict[str, Any]:
    """The same settings in either dialect: the reply cap and the reasoning effort."""
    if dialect == "live":
        return {"delegation": backend_delegation(args.effort, args.max_output_tokens)}
    session: dict[str, Any] = {"max_output_tokens": args.max_output_tokens}
    if args.effort:
        session["reasoning"] = {"effort": args.effort}
    return session


async def run_endpoints(
    args: argparse.Namespace, endpoints: dict[str, Endpoint]
) -> dict[str, list[list[dict[str, Any]]]]:
    """Every endpoint's runs, levels taken in turn (each N on each endpoint, then the next N),
    so that load from other processes falls on all of them alike: runs[endpoint][r][level]."""
    questions = spoken_questions()
    runs: dict[str, list[list[dict[str, Any]]]] = {name: [] for name in endpoints}
    for run_index in range(args.runs):
        for levels in runs.values():
            levels.append([])
        for n_users in [int(n) for n in args.users.split(",")]:
            for name, endpoint in endpoints.items():
                summary, _ = await run_level(
                    n_users,
                    endpoint,
                    args.api_key,
                    session_for(endpoint.dialect, args),
                    questions,
                    args.turns,
                    args.pause,
                    args.time_limit,
                )
                runs[name][-1].append(summary)
                print(
                    f"{name + ' ' if name else ''}run {run_index + 1}, N={n_users}: "
                    f"{summary['succeeded']}/{summary['turns']} turns ok, FPL p50 "
                    f"{fmt(summary['first_packet_p50_s'])} s ({summary['wall_s']:.0f} s)",
                    flush=True,
                )
    return runs


def median_of(values: list[Any]) -> Any:
    """The median of numbers (None ignored), merged recursively through dicts."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, dict) for v in present):
        keys = {k for v in present for k in v}
        return {k: median_of([v.get(k) for v in present]) for k in sorted(keys)}
    if present and all(isinstance(v, (int, float)) for v in present):
        return statistics.median(present)
    return present[0] if present else None


def median_levels(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Each level's figures as the median over runs; turn counts and errors are summed."""
    merged = []
    for level_runs in zip(*runs, strict=True):
        figures = {k: v for k, v in level_runs[0].items() if k != "per_turn"}
        level = {k: median_of([r[k] for r in level_runs]) for k in figures}
        level["users"] = level_runs[0]["users"]
        for total in ("turns", "succeeded", "errors", "cancelled", "incomplete"):
            level[total] = sum(r[total] for r in level_runs)
        level["error_examples"] = sorted({e for r in level_runs for e in r["error_examples"]})[:5]
        merged.append(level)
    return merged


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        vad = args.vad or None
        serve(
            args.model,
            args.responder,
            args.port,
            args.max_sessions,
            args.tts_backend,
            args.engine,
            vad,
        )
        return 0
    variants = server_variants(args)
    dialects = dialects_of(args)
    if len(dialects) > 1 or (len(variants) > 1 and not args.url):
        return compare_endpoints(args, variants, dialects)
    users = [int(n) for n in args.users.split(",")]
    with contextlib.ExitStack() as stack:
        url = args.url or stack.enter_context(
            own_server(
                args.model, args.responder, max(users), args.tts_backend, args.engine, args.vad
            )
        )
        runs = asyncio.run(run(args, Endpoint(dialect_url(url, dialects[0]), dialects[0])))
        target = target_from(scrape(http_url(url, "/metrics")))
    levels = median_levels(runs)
    print(f"medians of {args.runs} run(s); turns, errors and cancellations summed over runs")
    print_table(levels)
    RESULTS.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in vars(args).items() if k not in ("api_key", "serve", "port")}
    report = {
        "config": config,
        "target_s": target,
        "sample_rate": WIRE_SAMPLE_RATE,
        "levels": levels,
        "runs": runs,
    }
    (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=2))
    serving = args.url or f"own server: {args.responder or args.model or 'default model'}"
    plot(levels, target, RESULTS / f"{args.name}.png", serving)
    print(f"wrote {RESULTS / (args.name + '.json')} and {args.name}.png")
    return 0


def server_variants(args: argparse.Namespace) -> dict[str, tuple[str, str | None]]:
    """Own servers to compare, by name: every `--engine` with every `--vad` given (a name
    says only what differs between them)."""
    engines = [e for e in args.engine.split(",") if e]
    vads: list[str | None] = [v for v in (args.vad or "").split(",") if v] or [None]
    variants = {}
    for engine in engines:
        for vad in vads:
            parts = [engine if len(engines) > 1 else "", (vad or "") if len(vads) > 1 else ""]
            variants["-".join(p for p in parts if p) or engine] = (engine, vad)
    return variants


def dialects_of(args: argparse.Namespace) -> list[str]:
    return [d for d in args.dialect.split(",") if d] or ["realtime"]


def compare_endpoints(
    args: argparse.Namespace, variants: dict[str, tuple[str, str | None]], dialects: list[str]
) -> int:
    """`--engine torch,vllm`, `--vad webrtc,silero` and/or `--dialect realtime,live`: one own
    server per variant (or the `--url` server), all up at once, each spoken to in each
    dialect, levels in turn; one table of first-packet p50/p95 per endpoint and N, one JSON,
    one plot per endpoint."""
    users = [int(n) for n in args.users.split(",")]
    with contextlib.ExitStack() as stack:
        servers = servers_under_test(stack, args, variants, max(users))
        endpoints = {
            endpoint_name(name, dialect, len(servers), len(dialects)): dataclasses.replace(
                server, url=dialect_url(server.url, dialect), dialect=dialect
            )
            for name, server in servers.items()
            for dialect in dialects
        }
        runs = asyncio.run(run_endpoints(args, endpoints))
        target = target_from(scrape(http_url(next(iter(servers.values())).url, "/metrics")))
    levels = {name: median_levels(endpoint_runs) for name, endpoint_runs in runs.items()}
    rows = side_by_side(levels, users)
    print(f"medians of {args.runs} run(s); first-packet latency, s")
    print_side_by_side(rows, list(endpoints))
    if "live" in dialects:
        print(
            "live: GPT-Live sends reply audio at the pace it plays, so its response times "
            "include the playback; it sends no turn events (no endpoint split)"
        )
    for name in endpoints:
        print(f"\n{name}:")
        print_table(levels[name])
        serving = f"{args.url or 'own server'}, {name}"
        plot(levels[name], target, RESULTS / f"{args.name}-{name}.png", serving)
    RESULTS.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in vars(args).items() if k not in ("api_key", "serve", "port")}
    report = {
        "config": config,
        "target_s": target,
        "sample_rate": WIRE_SAMPLE_RATE,
        "first_packet": rows,
        "servers": {
            name: {**asdict(endpoint), "levels": levels[name], "runs": runs[name]}
            for name, endpoint in endpoints.items()
        },
    }
    (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {RESULTS / (args.name + '.json')}")
    return 0


def servers_under_test(
    stack: contextlib.ExitStack,
    args: argparse.Namespace,
    variants: dict[str, tuple[str, str | None]],
    max_users: int,
) -> dict[str, Endpoint]:
    """By variant name: the `--url` server, or one own server per variant, up until `stack`
    closes."""
    if args.url:
        return {"": Endpoint(args.url)}
    return {
        name: Endpoint(
            stack.enter_context(
                own_server(args.model, args.responder, max_users, args.tts_backend, engine, vad)
            ),
            engine=engine,
            vad=vad,
        )
        for name, (engine, vad) in variants.items()
    }


def endpoint_name(server: str, dialect: str, n_servers: int, n_dialects: int) -> str:
    """What tells this endpoint from the others compared: its server, its dialect, or both."""
    parts = [server if n_servers > 1 else "", dialect if n_dialects > 1 else ""]
    return "-".join(part for part in parts if part) or server or dialect


def side_by_side(levels: dict[str, list[dict[str, Any]]], users: list[int]) -> list[dict[str, Any]]:
    """Per N, each endpoint's first-packet p50 and p95: the comparison at a glance."""
    return [
        {
            "users": n_users,
            **{
                name: {
                    f"first_packet_p{p}_s": endpoint_levels[index][f"first_packet_p{p}_s"]
                    for p in (50, 95)
                }
                for name, endpoint_levels in levels.items()
            },
        }
        for index, n_users in enumerate(users)
    ]


def print_side_by_side(rows: list[dict[str, Any]], names: list[str]) -> None:
    width = max(12, *(len(name) + 5 for name in names))
    print(
        f"{'N':>4}" + "".join(f"{name + ' p50':>{width}}{name + ' p95':>{width}}" for name in names)
    )
    for row in rows:
        cells = "".join(
            f"{fmt(row[name]['first_packet_p50_s']):>{width}}"
            f"{fmt(row[name]['first_packet_p95_s']):>{width}}"
            for name in names
        )
        print(f"{row['users']:>4}{cells}")


if __name__ == "__main__":
    raise SystemExit(main())
