"""Speech synthesis, every backend side by side: speed, first chunk, concurrency, intelligibility.

    python -m benchmarks.tts                      # espeak and piper (about 20 min on 2 cores)
    python -m benchmarks.tts --quick              # a smoke run (a minute or two)
    python -m benchmarks.tts --backends piper     # one backend
    python -m benchmarks.tts --round-trip-only    # only the 200-item round trips

Prints a table and writes benchmarks/results/tts.json, the concurrency plot tts_concurrency.png
and one answer spoken by each backend (tts_answer_<backend>.wav, to listen to). Figures are
medians over `--runs` runs; the machine's load average is recorded beside them.

- real-time factor: synthesis wall time / audio time, one session, a ~100-word answer.
- first chunk: a 20-word answer fed word by word every `TOKEN_INTERVAL_S`; time from the feed
  that completes the first clause (found by running the same `ClauseSegmenter` beside the
  stream) to the first audio chunk. Target: <= 80 ms (piper), < 50 ms (espeak).
- cancel: time for `cancel()` to return mid-answer (audio stopped, worker free again).
- concurrency: N sessions at once, each speaking a ~60-word answer, for growing N; each
  session's speed is its audio time / its own wall time, and the largest N whose slowest session
  stays above 1 (real time) is reported (target: 16). Also each level's worst underrun: how long
  a listener who starts playing at a session's first chunk would wait for audio.
- round trip: the 200 numbers in short sentences of `tests/tts/number_asr.py`, normalised and
  spoken through the backend (every voice, 150-200 wpm), recognised by pocketsphinx with a
  number grammar (tuned on espeak's Klatt voices, so it favours them) and by Whisper tiny.en
  (open vocabulary). Target: piper >= espeak.
- word timings: the backend's word start times against a forced alignment of the same audio
  to its spoken words (pocketsphinx, `tts.asr.ForcedAligner`) on the same 200 items; the first
  word of each item is left out (the aligner puts it at 0 s wherever the speech starts).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from tests.tts.number_asr import cases, sentence_recognizer, speak
from tts import get_backend
from tts.asr import (
    ForcedAligner,
    NumberRecognizer,
    WhisperRecognizer,
    numbers_in_text,
    words_to_number,
)
from tts.base import SAMPLE_RATE, SpeechStream, TTSBackend, WordTiming
from tts.normalize import normalize
from tts.segment import ClauseSegmenter

RESULTS_DIR = Path(__file__).parent / "results"
RESULTS = RESULTS_DIR / "tts.json"
PLOT = RESULTS_DIR / "tts_concurrency.png"
BACKENDS = ("espeak", "piper")
TOKEN_INTERVAL_S = 0.02  # 50 tokens per second, a fast LLM
SESSION_LEVELS = (1, 2, 4, 8, 12, 16, 20, 24, 32, 48, 64)  # tried in order until one fails
QUICK_SESSION_LEVELS = (1, 4, 16)
ROUND_TRIP_ITEMS, QUICK_ROUND_TRIP_ITEMS = 200, 20
TICK_S = 0.001
TARGETS = {
    "first_chunk_after_first_clause_ms": {"espeak": 50.0, "piper": 80.0},
    "most_sessions_real_time": 16,
    "round_trip": "piper >= espeak, with each recogniser",
}
SESSIONS_TARGET = 16
FIRST = ("first_chunk",)
WAV_VOICE = "alloy"

LONG_ANSWER = (
    "Photosynthesis is the process by which green plants, algae and some bacteria turn light "
    "into chemical energy. In the leaves, chlorophyll absorbs mostly red and blue light, and "
    "that energy splits water into oxygen, protons and electrons. The electrons move along a "
    "chain of proteins in the thylakoid membrane, which pumps protons and makes ATP. Then the "
    "Calvin cycle uses ATP and NADPH to fix carbon dioxide into sugars, about 3 molecules of "
    "carbon dioxide for each sugar with 3 carbons. Roughly 1% to 2% of sunlight becomes stored "
    "energy, which is still enough to feed almost every food chain on Earth."
)  # ~100 words
ANSWER_20_WORDS = (
    "Seven times six is forty two, so each of the six boxes holds seven apples and "
    "there are forty two in total."
)
SESSION_ANSWER = " ".join(LONG_ANSWER.split()[:60])
WAV_ANSWER = (
    "Seven times six is 42. Each of the 6 boxes holds 7 apples, so there are 42 apples in "
    "total; if you eat 2 of them, 40 are left."
)


@dataclass
class Judges:
    """The recognisers and the aligner, made once for every backend."""

    sphinx: NumberRecognizer = field(default_factory=sentence_recognizer)
    whisper: WhisperRecognizer = field(
        default_factory=lambda: WhisperRecognizer(threads=os.cpu_count() or 1)
    )
    aligner: ForcedAligner = field(default_factory=ForcedAligner)


def _words(text: str) -> list[str]:
    return re.findall(r"\S+\s*", text)


async def _speak_all(
    backend: TTSBackend, text: str, voice: str = "alloy"
) -> tuple[float, float, float]:
    """(audio s, wall s, worst underrun s) for one answer fed at once."""
    start = time.perf_counter()
    stream = backend.open_stream(voice)
    stream.feed(text)
    stream.flush()
    samples, first, underrun = 0, math.nan, 0.0
    async for chunk in stream:
        now = time.perf_counter()
        if len(chunk.pcm) and math.isnan(first):
            first = now
        if not math.isnan(first):
            underrun = max(underrun, now - (first + samples / SAMPLE_RATE))
        samples += len(chunk.pcm)
    return samples / SAMPLE_RATE, time.perf_counter() - start, underrun


async def real_time_factor(backend: TTSBackend, runs: int) -> dict[str, float]:
    results = [await _speak_all(backend, LONG_ANSWER) for _ in range(runs)]
    audio_s = statistics.median(r[0] for r in results)
    wall_s = statistics.median(r[1] for r in results)
    return {"audio_s": audio_s, "wall_s": wall_s, "real_time_factor": wall_s / audio_s}


async def _first_chunk_once(backend: TTSBackend) -> tuple[float, float]:
    """(ms from the first character fed, ms from the first clause complete) to the first audio."""
    stream = backend.open_stream("coral")
    shadow = ClauseSegmenter()  # tells when the stream's segmenter completes its first piece
    marks: dict[str, float] = {}
    consumer = asyncio.ensure_future(_first_audio_time(stream))
    for word in _words(ANSWER_20_WORDS):
        now = time.perf_counter()
        marks.setdefault("first_char", now)
        stream.feed(word)
        if shadow.feed(word):
            marks.setdefault("first_clause", now)
        await asyncio.sleep(TOKEN_INTERVAL_S)
    stream.flush()
    first_out = await consumer
    return (first_out - marks["first_char"]) * 1000, (first_out - marks["first_clause"]) * 1000


async def _first_audio_time(stream: SpeechStream) -> float:
    first = math.nan
    async for chunk in stream:
        if len(chunk.pcm) and math.isnan(first):
            first = time.perf_counter()
    return first


async def first_chunk(backend: TTSBackend, runs: int) -> dict[str, float]:
    results = [await _first_chunk_once(backend) for _ in range(runs)]
    from_clause = [c for _, c in results]
    return {
        "after_first_char_ms": statistics.median(f for f, _ in results),
        "after_first_clause_ms": statistics.median(from_clause),
        "after_first_clause_max_ms": max(from_clause),
        "token_interval_ms": TOKEN_INTERVAL_S * 1000,
    }


async def cancel_latency(backend: TTSBackend, runs: int) -> dict[str, float]:
    """ms for `cancel()` to return (synthesis stopped, worker free) in the middle of an answer."""
    latencies = []
    for _ in range(runs):
        stream = backend.open_stream("echo")
        stream.feed(" ".join([LONG_ANSWER] * 3))
        stream.flush()
        await anext(aiter(stream))
        start = time.perf_counter()
        await stream.cancel()
        latencies.append((time.perf_counter() - start) * 1000)
    return {"cancel_ms": statistics.median(latencies), "cancel_max_ms": max(latencies)}


class _LoopStallMeter:
    """The longest the event loop was late to wake a task sleeping `TICK_S`."""

    def __init__(self) -> None:
        self.worst_s = 0.0
        self._task = asyncio.ensure_future(self._tick())

    async def _tick(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(TICK_S)
            self.worst_s = max(self.worst_s, time.perf_counter() - before - TICK_S)

    async def stop(self) -> float:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        return self.worst_s


async def _concurrency_once(backend: TTSBackend, sessions: int) -> tuple[float, ...]:
    """(aggregate audio s per wall s, slowest session's speed, worst underrun ms, stall ms)."""
    voices = backend.voices()
    meter = _LoopStallMeter()
    start = time.perf_counter()
    results = await asyncio.gather(
        *(_speak_all(backend, SESSION_ANSWER, voices[i % len(voices)]) for i in range(sessions))
    )
    wall = time.perf_counter() - start
    stall = await meter.stop()
    return (
        sum(r[0] for r in results) / wall,
        min(r[0] / r[1] for r in results),
        max(r[2] for r in results) * 1000,
        stall * 1000,
    )


async def concurrency(backend: TTSBackend, levels: tuple[int, ...], runs: int) -> dict[str, Any]:
    """Each level in turn until the slowest session falls below real time."""
    rows = []
    for sessions in levels:
        results = [await _concurrency_once(backend, sessions) for _ in range(runs)]
        rows.append(
            {
                "sessions": sessions,
                "aggregate_audio_s_per_s": statistics.median(r[0] for r in results),
                "slowest_session_speed_x_real_time": statistics.median(r[1] for r in results),
                "worst_underrun_ms": statistics.median(r[2] for r in results),
                "event_loop_worst_stall_ms": statistics.median(r[3] for r in results),
            }
        )
        if rows[-1]["slowest_session_speed_x_real_time"] < 1.0:
            break
    real_time = [r["sessions"] for r in rows if r["slowest_session_speed_x_real_time"] >= 1.0]
    return {
        "levels": rows,
        "most_sessions_real_time": max(real_time, default=0),
        "stopped_at_the_last_level": rows[-1]["slowest_session_speed_x_real_time"] >= 1.0,
    }


async def round_trip(backend: TTSBackend, count: int, judges: Judges) -> dict[str, Any]:
    """The numbers heard by both recognisers, and word start errors against a forced alignment."""
    right = {"pocketsphinx": 0, "whisper": 0}
    by_voice: dict[str, list[int]] = {}
    misses: dict[str, list[str]] = {"pocketsphinx": [], "whisper": []}
    errors: list[float] = []
    not_aligned = 0
    for case in cases(count, seed=0):
        pcm, timings = await speak(backend, case)
        heard = judges.sphinx.recognise(pcm, SAMPLE_RATE)
        text = judges.whisper.transcribe(pcm, SAMPLE_RATE)
        results = {
            "pocketsphinx": words_to_number(heard.split()) == case.number,
            "whisper": numbers_in_text(text) == [case.number],
        }
        tally = by_voice.setdefault(case.voice_name, [0, 0, 0])
        tally[0] += 1
        for index, (recogniser, ok) in enumerate(results.items()):
            right[recogniser] += ok
            tally[index + 1] += ok
            if not ok:
                said = heard if recogniser == "pocketsphinx" else text
                misses[recogniser].append(f"{case.text!r} ({case.voice_name}) -> {said!r}")
        item_errors = _start_errors(case.text, pcm, timings, judges.aligner)
        not_aligned += item_errors is None
        errors += item_errors or []
    absolute = [abs(e) for e in errors]
    return {
        "items": count,
        "pocketsphinx_right": right["pocketsphinx"],
        "pocketsphinx_accuracy": right["pocketsphinx"] / count,
        "whisper_right": right["whisper"],
        "whisper_accuracy": right["whisper"] / count,
        "by_voice_items_sphinx_whisper": {v: "/".join(map(str, t)) for v, t in by_voice.items()},
        "word_timing_vs_forced_alignment": {
            "words_compared": len(errors),
            "items_not_aligned": not_aligned,
            "median_abs_error_ms": statistics.median(absolute) if errors else math.nan,
            "p90_abs_error_ms": float(np.percentile(absolute, 90)) if errors else math.nan,
            "mean_signed_error_ms": statistics.fmean(errors) if errors else math.nan,
        },
        "misses": misses,
    }


def _start_errors(
    text: str, pcm: np.ndarray, timings: list[WordTiming], aligner: ForcedAligner
) -> list[float] | None:
    """Backend start - aligned start (ms) of each original word's first spoken word, leaving out
    the first word (the aligner puts it at 0 wherever the speech starts); None: not aligned."""
    spoken = normalize(text)
    words = [re.sub(r"[^\w']", "", spoken.text[s.start : s.end]).lower() for s in spoken.spans]
    aligned = aligner.align(pcm, SAMPLE_RATE, words)
    if not aligned:
        return None
    first_spoken: dict[int, int] = {}
    for index, span in enumerate(spoken.spans):
        first_spoken.setdefault(span.source_start, index)
    return [
        timing.start_ms - aligned[first_spoken[timing.start_char]].start_ms
        for timing in timings
        if first_spoken.get(timing.start_char, 0) > 0
    ]


async def write_wav(backend: TTSBackend, name: str) -> str:
    stream = backend.open_stream(WAV_VOICE)
    stream.feed(WAV_ANSWER)
    stream.flush()
    pcm = np.concatenate([chunk.pcm async for chunk in stream])
    path = RESULTS_DIR / f"tts_answer_{name}.wav"
    sf.write(path, pcm, SAMPLE_RATE, subtype="PCM_16")
    return path.name


async def measure(name: str, args: argparse.Namespace, judges: Judges) -> dict:
    runs = 1 if args.quick else args.runs
    started = time.perf_counter()
    backend = get_backend(name, **({"max_workers": args.workers} if args.workers else {}))
    result: dict[str, Any] = {"start_s": time.perf_counter() - started}
    try:
        await asyncio.gather(*(_speak_all(backend, "Warm up.", v) for v in backend.voices()))
        if not args.round_trip_only:
            levels = QUICK_SESSION_LEVELS if args.quick else SESSION_LEVELS
            result |= {
                "workers": getattr(backend, "workers", None),
                "real_time": await real_time_factor(backend, runs),
                "first_chunk": await first_chunk(backend, runs * 2),
                "cancel": await cancel_latency(backend, runs * 2),
                "concurrency": await concurrency(backend, levels, runs),
                "wav": await write_wav(backend, name),
            }
        items = QUICK_ROUND_TRIP_ITEMS if args.quick else ROUND_TRIP_ITEMS
        result["round_trip"] = await round_trip(backend, items, judges)
    finally:
        await backend.close()
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated")
    parser.add_argument("--workers", type=int, default=None, help="synthesis workers")
    parser.add_argument("--round-trip-only", action="store_true", help="only the round trips")
    args = parser.parse_args()
    names = [n for n in args.backends.split(",") if n]
    judges = Judges()
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "load_average_before": os.getloadavg(),
        "runs": 1 if args.quick else args.runs,
        "quick": args.quick,
        "targets": TARGETS,
        "backends": dict(previous.get("backends", {})) if args.round_trip_only else {},
    }
    for name in names:
        measured = await measure(name, args, judges)
        if args.round_trip_only:
            results["backends"].setdefault(name, {})["round_trip"] = measured["round_trip"]
        else:
            results["backends"][name] = measured
    results["load_average_after"] = os.getloadavg()
    _print_table(results)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    if not args.round_trip_only:
        _plot(results)


def _print_table(results: dict) -> None:
    backends = results["backends"]
    names = list(backends)
    print(
        f"{results['cpu_count']} CPUs, load average {results['load_average_before'][0]:.1f} "
        f"before, {results['load_average_after'][0]:.1f} after; medians of {results['runs']} runs"
    )
    print(f"{'':<44}" + "".join(f"{n:>16}" for n in names))
    timing = ("round_trip", "word_timing_vs_forced_alignment")
    rows = [
        ("start (s)", ("start_s",), "{:.2f}"),
        ("workers", ("workers",), "{}"),
        ("real-time factor (1 session, 100 words)", ("real_time", "real_time_factor"), "{:.4f}"),
        ("first chunk after first clause (ms)", (*FIRST, "after_first_clause_ms"), "{:.0f}"),
        ("  max (ms)", (*FIRST, "after_first_clause_max_ms"), "{:.0f}"),
        ("first chunk after first char (ms)", (*FIRST, "after_first_char_ms"), "{:.0f}"),
        ("cancel mid-answer (ms)", ("cancel", "cancel_ms"), "{:.1f}"),
        ("most sessions in real time", ("concurrency", "most_sessions_real_time"), "{}"),
        ("round trip, pocketsphinx", ("round_trip", "pocketsphinx_accuracy"), "{:.1%}"),
        ("round trip, Whisper tiny.en", ("round_trip", "whisper_accuracy"), "{:.1%}"),
        ("word start vs alignment, median |err| (ms)", (*timing, "median_abs_error_ms"), "{:.0f}"),
        ("word start vs alignment, p90 |err| (ms)", (*timing, "p90_abs_error_ms"), "{:.0f}"),
        ("word start vs alignment, mean signed (ms)", (*timing, "mean_signed_error_ms"), "{:+.0f}"),
    ]
    for label, path, form in rows:
        cells = [_lookup(backends[n], path) for n in names]
        print(
            f"{label:<44}" + "".join(f"{'-' if c is None else form.format(c):>16}" for c in cells)
        )
    for name in names:
        levels = backends[name].get("concurrency", {}).get("levels", [])
        if levels:
            print(f"{name}: sessions -> slowest session x real time (worst underrun ms)")
            print(
                "  "
                + ", ".join(
                    f"{r['sessions']}: {r['slowest_session_speed_x_real_time']:.1f}x "
                    f"({r['worst_underrun_ms']:.0f})"
                    for r in levels
                )
            )
        trip = backends[name].get("round_trip", {})
        for recogniser, missed in trip.get("misses", {}).items():
            for miss in missed:
                print(f"  {name} missed ({recogniser}): {miss}")


def _lookup(results: dict, path: tuple[str, ...]) -> Any:
    """results[path[0]][path[1]]..., or None where a level is missing."""
    value: Any = results
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _plot(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, backend in results["backends"].items():
        levels = backend.get("concurrency", {}).get("levels", [])
        ax.plot(
            [r["sessions"] for r in levels],
            [r["slowest_session_speed_x_real_time"] for r in levels],
            marker="o",
            label=name,
        )
    ax.axhline(1.0, color="grey", linestyle="--", label="real time")
    ax.axvline(SESSIONS_TARGET, color="grey", linestyle=":", label=f"{SESSIONS_TARGET} sessions")
    ax.set_xlabel("concurrent sessions")
    ax.set_ylabel("slowest session, x real time")
    ax.set_yscale("log")
    ax.set_title(f"TTS concurrency on {results['cpu_count']} CPUs")
    ax.legend()
    fig.tight_layout()
    fig.savefig(PLOT, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    asyncio.run(main())
