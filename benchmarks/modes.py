"""Modes: first-packet latency of every reasoning mode (docs/ARCHITECTURE.md), same questions.

The same spoken questions (espeak-ng) go through the server over a real socket on 127.0.0.1,
streamed in real time as a microphone would, in every scheduling mode: think_then_speak (the
baseline: full reasoning, then the answer), think_first, speak_first and no_think; each on two
servers at once, one with speculative turn start off and one with it on, question by question
(paired, so that drift in the machine's speed does not pass for a difference between them). A
reasoning budget makes every reasoning mode reason exactly N tokens, so the modes differ only in
when the answer starts.

The default model is a random 48.6M-parameter checkpoint in bf16: on these CPUs one decode step
takes about 27 ms, near what Step-Audio-R1 (33B) takes on one GPU, so stage times have the real
proportions (a tiny model's 1.5 ms steps leave only the fixed costs). Its output layer is
limited to whole words (`words_only`), so that its answers are speakable as a trained model's.

Per mode it reports first-packet latency p50/p95 from the client (end of the question's speech
as sent -> first audio delta), the server's split by stage (means, from /metrics, labelled by
mode), the ratio of each mode's p50 to think_then_speak's, and what speculative start saves on
the server's part of the latency (commit -> first audio) as a fraction of silence_duration_ms.

    python -m benchmarks.modes                    # about 10 minutes on two cores
    python -m benchmarks.modes --modes think_first --reasoning-tokens 400
    python -m benchmarks.modes --quick --size tiny --dtype float32   # a smoke run, ~40 s
    python -m benchmarks.modes --model PATH       # a real checkpoint (reasons as it likes,
                                                  # up to the budget)

Prints a table and writes benchmarks/results/modes.json and a plot beside it (`.png`). Figures
are medians over runs. The servers run in their own processes, so the client's pacing does not
share their event loop.
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
VAD_FRAME_MS = 30  # webrtcvad's frame, the server's default classifier
LEAD_MS = 300  # silence before each question
APPEND_MS = 20  # microphone-like appends, sent in real time
WIRE_RATE = 24_000
TURN_TIMEOUT_S = 60.0  # end of question -> response.done
# One torch thread: tiny matrices gain nothing from more, and on a shared machine extra
# threads mostly wait for each other, which makes every figure noisier.
SERVER_THREADS = 1
STAGES = (
    "endpoint",
    "server",
    "encode",
    "prefill",
    "first_reasoning_token",
    "first_answer_token",
    "first_tts_chunk",
)


# --- the server process ----------------------------------------------------------------------


def serve(args: argparse.Namespace) -> None:
    import torch
    import uvicorn

    from server.app import create_app
    from server.settings import Settings
    from streaming.pipeline import ResponderSettings, load_responder
    from streaming.scheduler import ScheduleSettings

    torch.set_num_threads(args.threads)
    schedule = ScheduleSettings(
        reasoning_segment=args.tc, answer_segment=args.tr, reasoning_budget=args.reasoning_tokens
    )
    settings = ResponderSettings(
        max_output_tokens=args.reasoning_tokens + ANSWER_TOKENS, schedule=schedule
    )
    responder = load_responder(
        args.model,
        device="cpu",
        dtype=args.dtype,
        max_sequences=8,
        max_seq_len=2048,
        settings=settings,
    )
    server_settings = Settings(
        host="127.0.0.1", port=args.port, speculative_start_ms=args.speculative_start_ms
    )
    uvicorn.run(
        create_app(responder, server_settings),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
    )


@contextlib.contextmanager
def own_server(args: argparse.Namespace, model: str, speculative_start_ms: int) -> Iterator[str]:
    port = free_port()
    with server_process(
        "benchmarks.modes",
        port,
        [
            "--model",
            model,
            "--speculative-start-ms",
            str(speculative_start_ms),
            "--reasoning-tokens",
            str(args.reasoning_tokens),
            "--tc",
            str(args.tc),
            "--tr",
            str(args.tr),
            "--threads",
            str(args.threads),
            "--dtype",
            args.dtype,
        ],
    ):
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
        await ws.send(
            json.dumps(
                {
                    "type": "session.update",
                    "session": {
                        "type": "realtime",
                        "reasoning": {"effort": effort},
                        "audio": {
                            "input": {
                                "turn_detection": {
                                    "type": "server_vad",
                                    "silence_duration_ms": SILENCE_MS,
                                }
                            }
                        },
                    },
                }
            )
        )
        timings: dict[str, float] = {}
        sender = asyncio.create_task(_speak(ws, question, speech_end, timings))
        try:
            first_audio = await asyncio.wait_for(_first_audio(ws), TURN_TIMEOUT_S)
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        return first_audio - timings["speech_end"]


async def _speak(ws: Any, question: np.ndarray, speech_end: int, timings: dict[str, float]) -> None:
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


async def measure(
    servers: dict[str, str], questions: list[tuple[np.ndarray, int]], runs: int, modes: list[str]
) -> dict[str, dict[str, dict[str, Any]]]:
    """Every mode on every question, `runs` times over, on every server (setting -> address).

    Paired: each question goes to every server in turn (the order alternating), mode after mode
    in each run, so that a change in the machine's speed falls on all settings and modes alike
    rather than on whichever server happened to run later.
    """
    latencies = {s: {mode: [] for mode in modes} for s in servers}
    reasoning = {s: dict.fromkeys(modes, 0.0) for s in servers}
    wasted = {s: dict.fromkeys(modes, 0.0) for s in servers}
    first = {s: scrape(address) for s, address in servers.items()}
    turn = 0
    for _ in range(runs):
        for mode in modes:
            before = {s: scrape(address) for s, address in servers.items()}
            for pcm, end in questions:
                order = list(servers) if turn % 2 == 0 else list(reversed(servers))
                turn += 1
                for setting in order:
                    latencies[setting][mode].append(
                        await ask(servers[setting], MODE_EFFORTS[mode], pcm, end)
                    )
            for setting, address in servers.items():
                after = scrape(address)
                for name, totals in (
                    ("realtime_reasoning_tokens", reasoning[setting]),
                    ("realtime_speculation_wasted_tokens", wasted[setting]),
                ):
                    totals[mode] += _counter(after, name) - _counter(before[setting], name)
    last = {s: scrape(address) for s, address in servers.items()}
    return {
        setting: {
            mode: {
                "first_packet_p50_s": float(np.percentile(values, 50)),
                "first_packet_p95_s": float(np.percentile(values, 95)),
                "first_packet_s": values,
                "server_stage_mean_s": _stage_delta(first[setting], last[setting], mode),
                "reasoning_tokens_mean": reasoning[setting][mode] / len(values),
                "wasted_speculative_tokens": wasted[setting][mode],
            }
            for mode, values in by_mode.items()
        }
        for setting, by_mode in latencies.items()
    }


def _stage_delta(before: dict, after: dict, mode: str) -> dict[str, float]:
    means = {}
    for stage in STAGES:
        labels = (("mode", mode), ("stage", stage))
        count = after.get(("realtime_stage_seconds_count", labels), 0.0) - before.get(
            ("realtime_stage_seconds_count", labels), 0.0
        )
        if count:
            total = after[("realtime_stage_seconds_sum", labels)] - before.get(
                ("realtime_stage_seconds_sum", labels), 0.0
            )
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
    from streaming.turns.machine import whole_frames_ms

    return (
        whole_frames_ms(SILENCE_MS, VAD_FRAME_MS) - whole_frames_ms(trigger_ms, VAD_FRAME_MS)
    ) / 1000


def speculation_savings(
    off: dict[str, dict[str, Any]], on: dict[str, dict[str, Any]]
) -> dict[str, dict[str, float]]:
    """Per mode: what speculative start takes off the server's part, two ways, in seconds and
    as a fraction of silence_duration_ms.

    - `server_saved`: the server's part (commit -> first audio) off minus on: the plain
      difference, but of two long and noisy means when the reasoning is long;
    - `head_start`: on the speculating server alone, the work to the first speech chunk
      (timed from the response's start) minus what was left after the commit: how much of
      the work was done before the commit. It cannot exceed `speculation_ceiling_s` nor the
      work itself, and it has no noise of a second run.

    Also the client's first-packet p50 off minus on.
    """
    savings = {}
    for mode in off:
        stages_off = off[mode]["server_stage_mean_s"]
        stages_on = on[mode]["server_stage_mean_s"]
        saved = {
            "first_packet_p50_saved_s": off[mode]["first_packet_p50_s"]
            - on[mode]["first_packet_p50_s"]
        }
        if "server" in stages_off and "server" in stages_on:
            saved["server_saved_s"] = stages_off["server"] - stages_on["server"]
        if "first_tts_chunk" in stages_on and "server" in stages_on:
            saved["head_start_s"] = max(0.0, stages_on["first_tts_chunk"] - stages_on["server"])
        for key in ("server_saved", "head_start"):
            if f"{key}_s" in saved:
                saved[f"{key}_fraction_of_silence"] = saved[f"{key}_s"] / (SILENCE_MS / 1000)
        savings[mode] = saved
    return savings


def print_table(report: dict[str, Any]) -> None:
    header = (
        f"{'speculation':<12}{'mode':<18}{'p50 ms':>8}{'p95 ms':>8}{'x base':>8}"
        f"{'server x':>9}{'reason':>8}" + "".join(f"{s[:11]:>12}" for s in STAGES)
    )
    print(header)
    for setting in ("off", "on"):
        for mode, r in report["speculation_" + setting].items():
            stages = "".join(
                f"{r['server_stage_mean_s'][s] * 1000:>12.0f}"
                if s in r["server_stage_mean_s"]
                else f"{'-':>12}"
                for s in STAGES
            )
            print(
                f"{setting:<12}{mode:<18}{r['first_packet_p50_s'] * 1000:>8.0f}"
                f"{r['first_packet_p95_s'] * 1000:>8.0f}{r['p50_ratio_to_baseline']:>8.2f}"
                f"{r.get('server_ratio_to_baseline', float('nan')):>9.2f}"
                f"{r['reasoning_tokens_mean']:>8.0f}{stages}"
            )
    trigger = report["config"]["speculative_start_ms"]
    print(
        f"\nspeculative start (after {trigger} ms of a {SILENCE_MS} ms silence window; at "
        f"most {speculation_ceiling_s(trigger) * 1000:.0f} ms) saves:"
    )
    print(
        f"  {'mode':<18}{'client p50':>11}{'server part':>13}{'of window':>11}"
        f"{'head start':>12}{'of window':>11}"
    )
    for mode, saved in report["speculation_savings"].items():
        cells = [f"{saved['first_packet_p50_saved_s'] * 1000:>9.0f}ms"]
        for key in ("server_saved", "head_start"):
            if f"{key}_s" in saved:
                cells += [
                    f"{saved[f'{key}_s'] * 1000:>11.0f}ms",
                    f"{saved[f'{key}_fraction_of_silence']:>11.0%}",
                ]
            else:
                cells += [f"{'-':>13}", f"{'-':>11}"]
        print(f"  {mode:<18}" + "".join(cells))


def default_checkpoint(size: str, directory: Path) -> str:
    from streaming.model.writer import write_checkpoint

    path = write_checkpoint(directory / size, size, seed=0)
    words_only(path)
    return str(path)


def words_only(path: Path) -> None:
    """Let a random checkpoint write only whole words: zero every other row of `lm_head`.

    With random weights and greedy decoding a model repeats a few sub-word pieces that never
    end a word, so speech would wait for the whole answer and the benchmark would time the
    answer's length, not the scheduling. With only `Ġword` tokens left above zero it writes one
    word per token (a trained model writes about 1.3 tokens per English word), so the first
    clause for speech is ready after a few tokens, as it would be. `</think>` and end-of-turn
    are among the zeroed rows: the reasoning budget ends every reasoning, and every answer runs
    to its token limit.
    """
    import re

    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    vocab = json.loads((path / "vocab.json").read_text())
    words = [i for token, i in vocab.items() if re.fullmatch("\u0120[a-z]{2,}", token)]
    for shard in path.glob("*.safetensors"):
        with safe_open(shard, "pt") as f:
            if "lm_head.weight" not in f.keys():
                continue
            tensors = {key: f.get_tensor(key) for key in f.keys()}
            metadata = f.metadata()
        head = tensors["lm_head.weight"]
        keep = torch.zeros(head.shape[0], dtype=torch.bool)
        keep[words] = True
        tensors["lm_head.weight"] = head * keep[:, None].to(head.dtype)
        save_file(tensors, shard, metadata=metadata)


async def run(args: argparse.Namespace, model: str) -> dict[str, Any]:
    count = QUICK_QUESTIONS if args.quick else args.questions
    runs = QUICK_RUNS if args.quick else args.runs
    questions = spoken_questions(count)
    report: dict[str, Any] = {
        "config": {
            "model": args.model or f"random {args.size}",
            "dtype": args.dtype,
            "reasoning_tokens": args.reasoning_tokens,
            "tc": args.tc,
            "tr": args.tr,
            "questions": count,
            "runs": runs,
            "silence_duration_ms": SILENCE_MS,
            "speculative_start_ms": args.speculative_start_ms,
            "speculation_ceiling_s": speculation_ceiling_s(args.speculative_start_ms),
        }
    }
    with contextlib.ExitStack() as stack:
        servers = {
            setting: stack.enter_context(own_server(args, model, start_ms))
            for setting, start_ms in (("off", 0), ("on", args.speculative_start_ms))
        }
        for address in servers.values():
            await ask(address, "minimal", *questions[0])  # warm-up: first-call costs
        results = await measure(servers, questions, runs, args.modes)
    for setting, by_mode in results.items():
        add_ratios(by_mode)
        report["speculation_" + setting] = by_mode
    report["speculation_savings"] = speculation_savings(
        report["speculation_off"], report["speculation_on"]
    )
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="checkpoint directory (default: a random --size one)")
    parser.add_argument(
        "--size", default="bench50m", help="random checkpoint preset: bench50m (default), tiny"
    )
    parser.add_argument(
        "--reasoning-tokens",
        type=int,
        default=REASONING_TOKENS,
        help="reasoning budget of every reply (default %(default)s)",
    )
    parser.add_argument("--tc", type=int, default=80, help="reasoning segment (Tc)")
    parser.add_argument("--tr", type=int, default=20, help="answer segment (Tr)")
    parser.add_argument("--questions", type=int, default=DEFAULT_QUESTIONS)
    parser.add_argument(
        "--runs", type=int, default=DEFAULT_RUNS, help="passes over the questions per mode"
    )
    parser.add_argument(
        "--dtype",
        choices=["float32", "bfloat16"],
        default="bfloat16",
        help="server weights (default %(default)s)",
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=list(MODE_EFFORTS),
        default=list(MODE_EFFORTS),
        help=f"modes to run (always with {BASELINE})",
    )
    parser.add_argument(
        "--speculative-start-ms",
        type=int,
        default=Settings().speculative_start_ms,
        help="speculation trigger of the 'on' runs (default: the server's, %(default)s)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=SERVER_THREADS,
        help="torch threads of the server (default %(default)s)",
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_QUESTIONS} questions, {QUICK_RUNS} run"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "modes.json")
    parser.add_argument(
        "--replot",
        action="store_true",
        help="recompute the savings, table and plot of an earlier --out; run nothing",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def plot(report: dict[str, Any], path: Path) -> None:
    """Bars of the client's p50 first-packet latency per mode, split into the endpoint delay
    (speech end -> commit) and the rest, speculation off beside on; the 0.92 s target line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = list(report["speculation_off"])
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.38
    for offset, setting in ((-width / 2, "off"), (width / 2, "on")):
        results = report["speculation_" + setting]
        total = np.array([results[m]["first_packet_p50_s"] for m in modes])
        endpoint = np.array(
            [
                min(results[m]["server_stage_mean_s"].get("endpoint", 0.0), t)
                for m, t in zip(modes, total, strict=True)
            ]
        )
        x = np.arange(len(modes)) + offset
        ax.bar(
            x,
            endpoint,
            width,
            color="#bbbbbb" if setting == "off" else "#dddddd",
            label=f"speech end -> commit (speculation {setting})",
        )
        ax.bar(
            x,
            total - endpoint,
            width,
            bottom=endpoint,
            color="#4477aa" if setting == "off" else "#ee7733",
            label=f"after commit (speculation {setting})",
        )
    ax.axhline(0.92, color="black", linestyle="--", linewidth=1, label="0.92 s")
    ax.set_xticks(np.arange(len(modes)), modes)
    ax.set_ylabel("first-packet latency p50 (s)")
    config = report["config"]
    ax.set_title(
        f"{config['model']}, {config['reasoning_tokens']} reasoning tokens, "
        f"Tc {config['tc']}, Tr {config['tr']}"
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.modes = [mode for mode in MODE_EFFORTS if mode in {BASELINE, *args.modes}]
    if args.serve:
        serve(args)
        return 0
    if args.replot:
        report = json.loads(args.out.read_text())
        report["speculation_savings"] = speculation_savings(
            report["speculation_off"], report["speculation_on"]
        )
    else:
        with tempfile.TemporaryDirectory() as directory:
            model = args.model or default_checkpoint(args.size, Path(directory))
            report = asyncio.run(run(args, model))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    plot(report, args.out.with_suffix(".png"))
    print(f"\nwrote {args.out} and {args.out.with_suffix('.png').name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
