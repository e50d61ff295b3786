"""Modes: first-packet latency of every reasoning mode (DESIGN section 6), same questions.

The same spoken questions (espeak-ng) go through the server over a real socket on 127.0.0.1,
streamed in real time as a microphone would, in every scheduling mode: think_then_speak (the
baseline: full reasoning, then the answer), think_first, speak_first and no_think; once with
speculative turn start off and once on. A reasoning budget makes every reasoning mode reason
exactly N tokens even with random weights (which rarely write `</think>`), so the modes differ
only in when the answer starts.

Per mode it reports first-packet latency p50/p95 from the client (end of the question's speech
as sent -> first audio delta), the server's split by stage (means, from /metrics, labelled by
mode), the ratio of each mode's p50 to think_then_speak's, and what speculative start saves on
the server's part of the latency (commit -> first audio) as a fraction of silence_duration_ms.

    python -m benchmarks.modes                    # tiny random checkpoint, 200 reasoning tokens
    python -m benchmarks.modes --quick            # 2 questions, 1 run: about a minute
    python -m benchmarks.modes --size bench50m --dtype bfloat16   # a decode step about as
                                                  # long as the 33B model's on one GPU
    python -m benchmarks.modes --modes think_then_speak think_first --reasoning-tokens 400
    python -m benchmarks.modes --model PATH       # a real checkpoint (reasons as it likes,
                                                  # up to the budget)

Prints a table and writes benchmarks/results/modes.json. Figures are medians over runs. The
server runs in its own process, so the client's pacing does not share its event loop or GIL.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.server_process import free_port, server_process
from server.settings import Settings

RESULTS = Path(__file__).parent / "results"
MODE_EFFORTS = {  # one effort per scheduling mode (streaming.scheduler.EFFORT_MODES)
    "think_then_speak": "xhigh",
    "think_first": "medium",
    "speak_first": "low",
    "no_think": "minimal",
}
BASELINE = "think_then_speak"
QUESTIONS = (
    "What is seven times six?",
    "What is twelve plus nine?",
    "What is one hundred minus thirty five?",
    "What is eighty one divided by nine?",
)
DEFAULT_QUESTIONS, DEFAULT_RUNS = 3, 2
QUICK_QUESTIONS, QUICK_RUNS = 2, 1
REASONING_TOKENS = 200  # the target is stated for reasoning of at least this length
ANSWER_TOKENS = 60  # the answer's share of max_output_tokens: keeps each reply short
SILENCE_MS = 500  # server_vad silence_duration_ms: the turn commits after this much silence
LEAD_MS = 300  # silence before each question
APPEND_MS = 20  # microphone-like appends, sent in real time
WIRE_RATE = 24_000
TURN_TIMEOUT_S = 60.0  # end of question -> response.done
# One torch thread: tiny matrices gain nothing from more, and on a shared machine extra
# threads mostly wait for each other, which makes every figure noisier.
SERVER_THREADS = 1
STAGES = ("endpoint", "server", "encode", "prefill", "first_reasoning_token",
          "first_answer_token", "first_tts_chunk")


# --- the server process ----------------------------------------------------------------------


def serve(args: argparse.Namespace) -> None:
    import torch
    import uvicorn

    from server.app import create_app
    from server.settings import Settings
    from streaming.pipeline import ResponderSettings, load_responder
    from streaming.scheduler import ScheduleSettings

    torch.set_num_threads(args.threads)
    schedule = ScheduleSettings(reasoning_segment=args.tc, answer_segment=args.tr,
                                reasoning_budget=args.reasoning_tokens)
    settings = ResponderSettings(max_output_tokens=args.reasoning_tokens + ANSWER_TOKENS,
                                 schedule=schedule)
    responder = load_responder(args.model, device="cpu", dtype=args.dtype, max_sequences=8,
                               max_seq_len=2048, settings=settings)
    server_settings = Settings(host="127.0.0.1", port=args.port,
                               speculative_start_ms=args.speculative_start_ms)
    uvicorn.run(create_app(responder, server_settings), host="127.0.0.1", port=args.port,
                log_level="warning")


@contextlib.contextmanager
def own_server(args: argparse.Namespace, model: str, speculative_start_ms: int) -> Iterator[str]:
    port = free_port()
    with server_process("benchmarks.modes", port, [
        "--model", model, "--speculative-start-ms", str(speculative_start_ms),
        "--reasoning-tokens", str(args.reasoning_tokens), "--tc", str(args.tc),
        "--tr", str(args.tr), "--threads", str(args.threads), "--dtype", args.dtype,
    ]):
        yield f"127.0.0.1:{port}"


# --- the client ------------------------------------------------------------------------------


def spoken_questions(count: int) -> list[tuple[np.ndarray, int]]:
    """(PCM16 at 24 kHz with LEAD_MS of silence before, index of the last speech sample)."""
    import soxr

    from tts.espeak import synthesize

    questions = []
    for text in QUESTIONS[:count]:
        pcm, rate, _ = synthesize(text)
        pcm = soxr.resample(pcm, rate, WIRE_RATE).astype(np.int16)
        voiced = np.flatnonzero(np.abs(pcm) > 200)
        pcm = pcm[: voiced[-1] + 1]
        lead = np.zeros(WIRE_RATE * LEAD_MS // 1000, np.int16)
        questions.append((np.concatenate([lead, pcm]), len(lead) + len(pcm)))
    return questions


def _append(pcm: np.ndarray) -> str:
    audio = base64.b64encode(pcm.astype("<i2").tobytes()).decode()
    return json.dumps({"type": "input_audio_buffer.append", "audio": audio})


async def ask(address: str, effort: str, question: np.ndarray, speech_end: int) -> float:
    """One turn in a fresh session: seconds from the end of speech (as sent) to first audio."""
    import websockets

    async with websockets.connect(f"ws://{address}/v1/realtime", max_size=None) as ws:
        await ws.send(json.dumps({"type": "session.update", "session": {
            "type": "realtime", "reasoning": {"effort": effort},
            "audio": {"input": {"turn_detection": {
                "type": "server_vad", "silence_duration_ms": SILENCE_MS}}}}}))
        timings: dict[str, float] = {}
        sender = asyncio.create_task(_speak(ws, question, speech_end, timings))
        try:
            first_audio = await asyncio.wait_for(_first_audio(ws), TURN_TIMEOUT_S)
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        return first_audio - timings["speech_end"]


async def _speak(ws: Any, question: np.ndarray, speech_end: int, timings: dict[str, float]
                 ) -> None:
    """The question, then silence, in real time until cancelled (a microphone left open)."""
    step = WIRE_RATE * APPEND_MS // 1000
    start = time.monotonic()
    for index in range(10**6):
        begin = index * step
        piece = question[begin : begin + step]
        if len(piece) < step:
            piece = np.concatenate([piece, np.zeros(step - len(piece), np.int16)])
        await asyncio.sleep(max(0.0, start + index * APPEND_MS / 1000 - time.monotonic()))
        await ws.send(_append(piece))
        if begin <= speech_end <= begin + step:
            timings["speech_end"] = time.monotonic()


async def _first_audio(ws: Any) -> float:
    first: float | None = None
    while True:
        event = json.loads(await ws.recv())
        if event["type"] == "response.output_audio.delta" and first is None:
            first = time.monotonic()
        elif event["type"] == "error":
            raise RuntimeError(f"server error: {event['error']}")
        elif event["type"] == "response.done":
            if first is None:
                raise RuntimeError(f"no audio in response: {event['response']['status']}")
            return first


# --- server metrics ----------------------------------------------------------------------------


def scrape(address: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _counter(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    return sum(value for (sample, _), value in samples.items() if sample == f"{name}_total")


# --- the run -----------------------------------------------------------------------------------


async def measure(address: str, questions: list[tuple[np.ndarray, int]], runs: int,
                  modes: list[str]) -> dict[str, dict[str, Any]]:
    """Every mode on every question, `runs` times over, mode after mode in each run (so that
    a change in the machine's load spreads over all modes)."""
    latencies: dict[str, list[float]] = {mode: [] for mode in modes}
    reasoning: dict[str, float] = dict.fromkeys(modes, 0.0)
    wasted: dict[str, float] = dict.fromkeys(modes, 0.0)
    first = scrape(address)
    for _ in range(runs):
        for mode in modes:
            before = scrape(address)
            for pcm, end in questions:
                latencies[mode].append(await ask(address, MODE_EFFORTS[mode], pcm, end))
            after = scrape(address)
            for name, totals in (("realtime_reasoning_tokens", reasoning),
                                 ("realtime_speculation_wasted_tokens", wasted)):
                totals[mode] += _counter(after, name) - _counter(before, name)
    last = scrape(address)
    return {
        mode: {
            "first_packet_p50_s": float(np.percentile(values, 50)),
            "first_packet_p95_s": float(np.percentile(values, 95)),
            "first_packet_s": values,
            "server_stage_mean_s": _stage_delta(first, last, mode),
            "reasoning_tokens_mean": reasoning[mode] / len(values),
            "wasted_speculative_tokens": wasted[mode],
        }
        for mode, values in latencies.items()
    }


def _stage_delta(before: dict, after: dict, mode: str) -> dict[str, float]:
    means = {}
    for stage in STAGES:
        labels = (("mode", mode), ("stage", stage))
        count = after.get(("realtime_stage_seconds_count", labels), 0.0) - before.get(
            ("realtime_stage_seconds_count", labels), 0.0)
        if count:
            total = after[("realtime_stage_seconds_sum", labels)] - before.get(
                ("realtime_stage_seconds_sum", labels), 0.0)
            means[stage] = total / count
    return means


def add_ratios(results: dict[str, dict[str, Any]]) -> None:
    baseline = results[BASELINE]["first_packet_p50_s"]
    baseline_server = results[BASELINE]["server_stage_mean_s"].get("server")
    for result in results.values():
        result["p50_ratio_to_baseline"] = result["first_packet_p50_s"] / baseline
        server = result["server_stage_mean_s"].get("server")
        if server is not None and baseline_server:
            result["server_ratio_to_baseline"] = server / baseline_server


def speculation_ceiling_s(trigger_ms: int) -> float:
    """The most speculation can save: from the frame that reaches the trigger to the one that
    closes the silence window (30 ms VAD frames). Reached when a reply's work is longer."""
    from server.vad import FRAME_MS

    frames = lambda ms: -(-ms // FRAME_MS)  # noqa: E731
    return (frames(SILENCE_MS) - frames(trigger_ms)) * FRAME_MS / 1000


def speculation_savings(off: dict[str, dict[str, Any]], on: dict[str, dict[str, Any]]
                        ) -> dict[str, dict[str, float]]:
    """Per mode: what speculative start takes off the server's part and off the client's
    first-packet latency, in seconds and as a fraction of silence_duration_ms. The server's
    part cannot shrink by more than it was, nor by more than `speculation_ceiling_s`."""
    savings = {}
    for mode in off:
        server_off = off[mode]["server_stage_mean_s"].get("server")
        server_on = on[mode]["server_stage_mean_s"].get("server")
        saved = {"first_packet_p50_saved_s": off[mode]["first_packet_p50_s"]
                 - on[mode]["first_packet_p50_s"]}
        if server_off is not None and server_on is not None:
            saved["server_saved_s"] = server_off - server_on
            saved["server_saved_fraction_of_silence"] = (server_off - server_on) / (
                SILENCE_MS / 1000)
        savings[mode] = saved
    return savings


def print_table(report: dict[str, Any]) -> None:
    header = (f"{'speculation':<12}{'mode':<18}{'p50 ms':>8}{'p95 ms':>8}{'x base':>8}"
              f"{'server x':>9}{'reason':>8}" + "".join(f"{s[:11]:>12}" for s in STAGES))
    print(header)
    for setting in ("off", "on"):
        for mode, r in report["speculation_" + setting].items():
            stages = "".join(
                f"{r['server_stage_mean_s'][s] * 1000:>12.0f}" if s in r["server_stage_mean_s"]
                else f"{'-':>12}" for s in STAGES)
            print(f"{setting:<12}{mode:<18}{r['first_packet_p50_s'] * 1000:>8.0f}"
                  f"{r['first_packet_p95_s'] * 1000:>8.0f}{r['p50_ratio_to_baseline']:>8.2f}"
                  f"{r.get('server_ratio_to_baseline', float('nan')):>9.2f}"
                  f"{r['reasoning_tokens_mean']:>8.0f}{stages}")
    trigger = report["config"]["speculative_start_ms"]
    print(f"\nspeculative start (after {trigger} ms of a {SILENCE_MS} ms silence window; at "
          f"most {speculation_ceiling_s(trigger) * 1000:.0f} ms) saves:")
    for mode, saved in report["speculation_savings"].items():
        server = saved.get("server_saved_s")
        fraction = saved.get("server_saved_fraction_of_silence")
        print(f"  {mode:<18} first packet p50 {saved['first_packet_p50_saved_s'] * 1000:6.0f} ms"
              + ("" if server is None else
                 f", server part {server * 1000:6.0f} ms = {fraction:.0%} of the window"))


def default_checkpoint(size: str, directory: Path) -> str:
    from streaming.model.writer import write_checkpoint

    return str(write_checkpoint(directory / size, size, seed=0))


async def run(args: argparse.Namespace, model: str) -> dict[str, Any]:
    count = QUICK_QUESTIONS if args.quick else args.questions
    runs = QUICK_RUNS if args.quick else args.runs
    questions = spoken_questions(count)
    report: dict[str, Any] = {"config": {
        "model": args.model or f"random {args.size}", "dtype": args.dtype,
        "reasoning_tokens": args.reasoning_tokens,
        "tc": args.tc, "tr": args.tr, "questions": count, "runs": runs,
        "silence_duration_ms": SILENCE_MS, "speculative_start_ms": args.speculative_start_ms,
        "speculation_ceiling_s": speculation_ceiling_s(args.speculative_start_ms),
    }}
    for setting, start_ms in (("off", 0), ("on", args.speculative_start_ms)):
        with own_server(args, model, start_ms) as address:
            await ask(address, "minimal", *questions[0])  # warm-up: first-call costs
            results = await measure(address, questions, runs, args.modes)
        add_ratios(results)
        report["speculation_" + setting] = results
    report["speculation_savings"] = speculation_savings(report["speculation_off"],
                                                        report["speculation_on"])
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="checkpoint directory (default: a random --size one)")
    parser.add_argument("--size", default="tiny", help="random checkpoint preset: tiny, bench50m")
    parser.add_argument("--reasoning-tokens", type=int, default=REASONING_TOKENS,
                        help="reasoning budget of every reply (default %(default)s)")
    parser.add_argument("--tc", type=int, default=80, help="reasoning segment (Tc)")
    parser.add_argument("--tr", type=int, default=20, help="answer segment (Tr)")
    parser.add_argument("--questions", type=int, default=DEFAULT_QUESTIONS)
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS,
                        help="passes over the questions per mode")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                        help="server weights (default %(default)s)")
    parser.add_argument("--modes", nargs="+", choices=list(MODE_EFFORTS),
                        default=list(MODE_EFFORTS), help="modes to run (always with %s)" % BASELINE)
    parser.add_argument("--speculative-start-ms", type=int,
                        default=Settings().speculative_start_ms,
                        help="speculation trigger of the 'on' runs (default: the server's, "
                             "%(default)s)")
    parser.add_argument("--threads", type=int, default=SERVER_THREADS,
                        help="torch threads of the server (default %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_QUESTIONS} questions, {QUICK_RUNS} run")
    parser.add_argument("--out", type=Path, default=RESULTS / "modes.json")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.modes = [mode for mode in MODE_EFFORTS if mode in {BASELINE, *args.modes}]
    if args.serve:
        serve(args)
        return 0
    with tempfile.TemporaryDirectory() as directory:
        model = args.model or default_checkpoint(args.size, Path(directory))
        report = asyncio.run(run(args, model))
    print_table(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
