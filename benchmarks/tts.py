"""Speech synthesis: speed, first-chunk latency, concurrency and a recognition round trip.

    python -m benchmarks.tts            # the full run (about a minute on 2 cores)
    python -m benchmarks.tts --quick    # a smoke run (seconds)
    python -m benchmarks.tts --round-trip-only  # the 200-item recognition round trip alone

Prints a table and writes benchmarks/results/tts.json. Figures are medians over `--runs` runs.

- real-time factor: synthesis wall time / audio time, one session, a ~100-word answer.
- first chunk: a 20-word answer fed word by word every `TOKEN_INTERVAL_S`; time from the first
  character fed to the first audio chunk, and from the feed that completes the first clause
  (found by running the same `ClauseSegmenter` beside the stream) to the first chunk.
  Target: < 50 ms after the first clause is complete.
- cancel: time for `cancel()` to return mid-answer (audio stopped, worker free again).
- concurrency: 1, 4, 16 sessions at once, each speaking a ~60-word answer; aggregate audio
  seconds per wall second, each session's speed (audio time / its own wall time; target > 1
  for all 16), and the event loop's worst stall meanwhile (a ticker task every millisecond).
- round trip: numbers in short sentences, normalised, synthesised with every backend voice at
  150, 175 and 200 wpm, recognised by pocketsphinx with a grammar of the normaliser's number
  forms inside the sentences' carriers (`tts.asr`; target: >= 95% right).
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
from pathlib import Path

from tests.tts.number_asr import cases, round_trip, sentence_recognizer
from tts.base import SAMPLE_RATE, SpeechStream
from tts.espeak_backend import EspeakBackend
from tts.segment import ClauseSegmenter

RESULTS = Path(__file__).parent / "results" / "tts.json"
TOKEN_INTERVAL_S = 0.02  # 50 tokens per second, a fast LLM
SESSIONS = (1, 4, 16)
TICK_S = 0.001

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


def _words(text: str) -> list[str]:
    return re.findall(r"\S+\s*", text)


async def _speak_all(
    backend: EspeakBackend, text: str, voice: str = "alloy"
) -> tuple[float, float]:
    """(audio seconds, wall seconds) for one answer fed at once."""
    start = time.perf_counter()
    stream = backend.open_stream(voice)
    stream.feed(text)
    stream.flush()
    samples = sum([len(chunk.pcm) async for chunk in stream])
    return samples / SAMPLE_RATE, time.perf_counter() - start


async def real_time_factor(backend: EspeakBackend, runs: int) -> dict[str, float]:
    results = [await _speak_all(backend, LONG_ANSWER) for _ in range(runs)]
    audio_s = statistics.median(a for a, _ in results)
    wall_s = statistics.median(w for _, w in results)
    return {"audio_s": audio_s, "wall_s": wall_s, "real_time_factor": wall_s / audio_s}


async def _first_chunk_once(backend: EspeakBackend) -> tuple[float, float]:
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


async def first_chunk(backend: EspeakBackend, runs: int) -> dict[str, float]:
    results = [await _first_chunk_once(backend) for _ in range(runs)]
    from_clause = [c for _, c in results]
    return {
        "first_chunk_after_first_char_ms": statistics.median(f for f, _ in results),
        "first_chunk_after_first_clause_ms": statistics.median(from_clause),
        "first_chunk_after_first_clause_max_ms": max(from_clause),
        "token_interval_ms": TOKEN_INTERVAL_S * 1000,
    }


async def cancel_latency(backend: EspeakBackend, runs: int) -> dict[str, float]:
    """ms for `cancel()` to return (worker stopped and free) in the middle of a long answer."""
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


async def _concurrency_once(backend: EspeakBackend, sessions: int) -> tuple[float, float, float]:
    """(aggregate audio s per wall s, slowest session's speed, worst loop stall ms)."""
    voices = backend.voices()
    meter = _LoopStallMeter()
    start = time.perf_counter()
    results = await asyncio.gather(
        *(_speak_all(backend, SESSION_ANSWER, voices[i % len(voices)]) for i in range(sessions))
    )
    wall = time.perf_counter() - start
    stall = await meter.stop()
    return sum(a for a, _ in results) / wall, min(a / w for a, w in results), stall * 1000


async def concurrency(backend: EspeakBackend, sessions: int, runs: int) -> dict[str, float]:
    results = [await _concurrency_once(backend, sessions) for _ in range(runs)]
    return {
        "sessions": sessions,
        "aggregate_audio_s_per_s": statistics.median(r[0] for r in results),
        "slowest_session_speed_x_real_time": statistics.median(r[1] for r in results),
        "event_loop_worst_stall_ms": statistics.median(r[2] for r in results),
    }


def recognition_round_trip(count: int) -> dict:
    recognizer = sentence_recognizer()
    by_voice: dict[str, list[bool]] = {}
    by_rate: dict[int, list[bool]] = {}
    misses = []
    for case in cases(count, seed=0):
        heard, words = round_trip(case, recognizer)
        by_voice.setdefault(f"{case.voice}@{case.pitch}", []).append(heard == case.number)
        by_rate.setdefault(case.requested_wpm, []).append(heard == case.number)
        if heard != case.number:
            misses.append(f"{case.text!r} ({case.voice}, {case.rate_wpm} wpm) -> {words!r}")
    total = sum(sum(results) for results in by_voice.values())
    return {
        "items": count,
        "numbers_right": total,
        "accuracy": total / count,
        "by_espeak_voice_at_pitch": {v: f"{sum(r)}/{len(r)}" for v, r in sorted(by_voice.items())},
        "by_requested_rate_wpm": {
            rate: f"{sum(r)}/{len(r)}" for rate, r in sorted(by_rate.items())
        },
        "misses": misses,
    }


def round_trip_only() -> None:
    """Run and print the round trip alone, updating its entry in the results file."""
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results["round_trip"] = recognition_round_trip(200)
    _print_round_trip(results["round_trip"])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=None, help="espeak worker processes")
    parser.add_argument("--round-trip-only", action="store_true", help="only the round trip")
    args = parser.parse_args()
    if args.round_trip_only:
        return round_trip_only()
    runs = 1 if args.quick else args.runs

    backend = EspeakBackend(args.workers)
    try:
        await _speak_all(backend, "Warm up every worker.")  # workers start in the background
        await asyncio.gather(*(_speak_all(backend, "Warm up.") for _ in range(backend._pool.size)))
        results: dict = {
            "cpu_count": os.cpu_count(),
            "workers": backend._pool.size,
            "runs": runs,
            "real_time": await real_time_factor(backend, runs),
            "first_chunk": await first_chunk(backend, runs * 2),
            "cancel": await cancel_latency(backend, runs * 2),
            "concurrency": [await concurrency(backend, n, runs) for n in SESSIONS],
        }
    finally:
        await backend.close()
    results["round_trip"] = recognition_round_trip(20 if args.quick else 200)
    _print_table(results)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


def _print_table(results: dict) -> None:
    rt, fc, asr = results["real_time"], results["first_chunk"], results["round_trip"]
    print(
        f"espeak-ng backend, {results['workers']} workers on {results['cpu_count']} CPUs, "
        f"medians of {results['runs']} runs"
    )
    print(
        f"{'real-time factor (1 session, ~100 words)':<48} {rt['real_time_factor']:.4f}"
        f"  ({rt['audio_s']:.1f} s audio in {rt['wall_s'] * 1000:.0f} ms)"
    )
    print(
        f"{'first chunk after first char fed (20 words)':<48} "
        f"{fc['first_chunk_after_first_char_ms']:.1f} ms"
    )
    print(
        f"{'first chunk after first clause complete':<48} "
        f"{fc['first_chunk_after_first_clause_ms']:.1f} ms (max "
        f"{fc['first_chunk_after_first_clause_max_ms']:.1f}; target < 50)"
    )
    cancel = results["cancel"]
    print(
        f"{'cancel mid-answer until the worker is free':<48} {cancel['cancel_ms']:.1f} ms"
        f" (max {cancel['cancel_max_ms']:.1f})"
    )
    print(
        f"{'sessions':>8} {'aggregate x real time':>22} {'slowest session x rt':>21} "
        f"{'loop stall ms':>14}"
    )
    for row in results["concurrency"]:
        print(
            f"{row['sessions']:>8} {row['aggregate_audio_s_per_s']:>22.1f} "
            f"{row['slowest_session_speed_x_real_time']:>21.1f} "
            f"{row['event_loop_worst_stall_ms']:>14.1f}"
        )
    _print_round_trip(asr)


def _print_round_trip(asr: dict) -> None:
    print(
        f"{'round trip (pocketsphinx, number grammar)':<48} {asr['numbers_right']}/{asr['items']}"
        f" = {asr['accuracy']:.1%} (target >= 95%)"
    )
    for name, key in (
        ("espeak voice@pitch", "by_espeak_voice_at_pitch"),
        ("requested rate", "by_requested_rate_wpm"),
    ):
        print(f"  by {name}: " + ", ".join(f"{k} {r}" for k, r in asr[key].items()))
    for miss in asr["misses"]:
        print(f"  missed: {miss}")


if __name__ == "__main__":
    asyncio.run(main())
