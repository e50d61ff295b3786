"""VAD quality: webrtcvad against Silero VAD as the server's speech classifier.

Which is the better default (issue 13): false speech starts on noise and on the server's own
voice played back, and missed speech. Both classifiers (`streaming.turns.vad`) run under the
same onset and end-of-speech rule the server applies (speech starts when `onset_needed` of the
last `onset_window` frames and the newest frame are speech; it stops after
`silence_duration_ms` of non-speech frames), at `server_vad.threshold` 0.3, 0.5 and 0.7, over:

- speech: espeak-ng questions in several voices and rates at a nominal level (-23 dBFS RMS over
  the speech), clean (a -70 dBFS microphone floor), quiet (-43 dBFS), and mixed with white,
  pink and babble noise at several SNRs;
- noise alone (white, pink, babble of six espeak-ng talkers, and clicks: short bursts such as
  knocks and keys) at the levels of those SNRs;
- the server's own voice alone (its TTS voices speaking its answers, `tts.espeak_backend`),
  played back 0 to 40 dB below the user's speech, as echo reaching the microphone.

Per setting: missed utterances (no turn overlaps the speech), turns the noise started before
the speech or never let end (the server would never commit them), the share of speech frames
labelled non-speech, utterances split into two or more turns, onset delay (true speech start
-> end of the frame where the onset rule fires), offset delay (true speech end -> end of the
last speech frame before the silence window, which the server adds on top), and false onsets
per minute (and the share of time called speech) on noise and on the server's voice alone.
Also what one frame costs to classify. Speech truth comes from the clean signal before mixing
(10 ms energy within 35 dB of the clip's peak, pauses under 250 ms bridged).

    python -m benchmarks.vad              # the full run (a few minutes on two cores)
    python -m benchmarks.vad --quick      # fewer clips, for a smoke run

Prints tables and writes benchmarks/results/vad.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streaming.turns.vad import (
    SAMPLE_RATE,
    VAD_KINDS,
    SileroClassifier,
    SpeechClassifier,
    make_classifier,
)

RESULTS = Path(__file__).parent / "results"
THRESHOLDS = (0.3, 0.5, 0.7)
SILENCE_MS = 500  # OpenAI's default server_vad silence_duration_ms
SPEECH_DBFS = -23.0  # nominal user speech level, RMS over its active part
QUIET_DBFS = -43.0
MIC_FLOOR_DBFS = -70.0  # a microphone is never digitally silent
SNRS_DB = (20, 10, 5)
NOISE_ONLY_SNRS_DB = (20, 10, 5, 0)  # noise alone at the level it has at these SNRs
ECHO_BELOW_DB = (0, 10, 20, 30, 40)  # the server's voice this far below the user's speech
LEAD_S, TAIL_S = 1.0, 1.2  # around each utterance: longer than the silence window
NOISE_ONLY_S = 60.0  # audio per noise-alone condition
QUICK_NOISE_ONLY_S = 15.0
BABBLE_TALKERS = 6
CLICKS_PER_S = 2.0
TRUTH_FRAME_MS = 10
TRUTH_RELATIVE_DB = -35.0
TRUTH_BRIDGE_MS = 250  # pauses between words shorter than this are inside the utterance
SPEED_FRAMES = 2000
SPEED_RUNS = 5
# Silero onset rules compared at threshold 0.5: (window, needed) in 32 ms frames.
SILERO_ONSET_RULES = ((1, 1), (2, 2), (3, 2), (4, 3), (6, 4), (8, 5))  # the default is left out

QUESTIONS = (
    "What is seventeen minus eight?",
    "Multiply six by four.",
    "What is twelve plus nine?",
    "Could you divide forty eight by six?",
    "How much is seven times eight?",
    "What do you get if you add three and five?",
)
VOICES = ("en-us", "en-gb", "en-us+klatt", "en-gb-scotland", "en-029+f2")
RATES_WPM = (140, 210)
QUICK_QUESTIONS, QUICK_VOICES, QUICK_RATES = 2, 2, (175,)
# What the server says back (its answers, in its own voices): the echo source.
ANSWERS = (
    "Seventeen minus eight is nine.",
    "Six times four is twenty four.",
    "Twelve plus nine is twenty one.",
    "Forty eight divided by six is eight.",
    "Seven times eight is fifty six.",
    "Three plus five is eight.",
)
ECHO_VOICES = ("alloy", "coral", "echo", "shimmer")


# --- audio ---------------------------------------------------------------------------------


def synth16(text: str, voice: str = "en-us", rate_wpm: int = 175, pitch: int = 50) -> np.ndarray:
    """espeak-ng speech as 16 kHz float32."""
    import soxr

    from tts.espeak import synthesize

    pcm, native_rate, _ = synthesize(text, voice, rate_wpm, pitch)
    return np.asarray(soxr.resample(pcm.astype(np.float32) / 32768.0, native_rate, SAMPLE_RATE))


def speech_mask(clean: np.ndarray) -> np.ndarray:
    """Per sample: inside the utterance (energy gate on the clean signal, short pauses
    bridged, long ones left out)."""
    step = SAMPLE_RATE * TRUTH_FRAME_MS // 1000
    n = len(clean) // step
    rms = np.sqrt((clean[: n * step].reshape(n, step) ** 2).mean(axis=1) + 1e-20)
    loud = 20 * np.log10(rms) > 20 * np.log10(rms.max()) + TRUTH_RELATIVE_DB
    frames = np.zeros(n, bool)
    on = np.flatnonzero(loud)
    if len(on):
        frames[on[0] : on[-1] + 1] = True
        gaps = np.flatnonzero(~loud[on[0] : on[-1] + 1]) + on[0]
        runs = np.split(gaps, np.flatnonzero(np.diff(gaps) > 1) + 1) if len(gaps) else []
        for run in runs:
            if len(run) * TRUTH_FRAME_MS > TRUTH_BRIDGE_MS:
                frames[run] = False
    mask = np.zeros(len(clean), bool)
    mask[: n * step] = np.repeat(frames, step)
    return mask


def active_rms(signal: np.ndarray, mask: np.ndarray) -> float:
    return float(np.sqrt(np.mean(signal[mask] ** 2))) if mask.any() else 0.0


def at_dbfs(signal: np.ndarray, rms: float, dbfs: float) -> np.ndarray:
    """`signal`, whose RMS is `rms`, scaled to an RMS of `dbfs`."""
    return np.asarray(signal * (10 ** (dbfs / 20) / max(rms, 1e-12)), dtype=np.float32)


def white(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS white noise."""
    return rng.standard_normal(n).astype(np.float32)


def pink(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS pink (1/f power) noise, shaped in the frequency domain."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0
    noise = np.fft.irfft(spectrum, n)
    return (noise / noise.std()).astype(np.float32)


def babble(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS babble: BABBLE_TALKERS espeak-ng voices talking at once, each without pause."""
    texts = QUESTIONS + ANSWERS
    mix = np.zeros(n, np.float32)
    for talker in range(BABBLE_TALKERS):
        voice = VOICES[talker % len(VOICES)]
        stream: list[np.ndarray] = [np.zeros(int(rng.integers(0, SAMPLE_RATE)), np.float32)]
        length = len(stream[0])
        while length < n:
            speech = synth16(
                texts[int(rng.integers(len(texts)))], voice, int(rng.integers(150, 220))
            )
            stream.append(speech / max(1e-9, float(np.sqrt(np.mean(speech**2)))))
            length += len(speech)
        mix += np.concatenate(stream)[:n]
    return (mix / mix.std()).astype(np.float32)


def clicks(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS impulsive noise (knocks, keys, a dropped cup): CLICKS_PER_S bursts of white
    noise of 5-80 ms with an exponential decay, over silence; the RMS is the bursts' own."""
    out = np.zeros(n, np.float32)
    for _ in range(int(n / SAMPLE_RATE * CLICKS_PER_S)):
        length = int(rng.uniform(0.005, 0.08) * SAMPLE_RATE)
        at = int(rng.integers(0, max(1, n - length)))
        decay = np.exp(-np.arange(length) / (length / 4))
        out[at : at + length] += (rng.standard_normal(length) * decay).astype(np.float32)
    return out / max(1e-9, active_rms(out, np.abs(out) > 1e-6))


NOISES: dict[str, Callable[[int, np.random.Generator], np.ndarray]] = {
    "white": white,
    "pink": pink,
    "babble": babble,
    "clicks": clicks,
}


@dataclass(frozen=True)
class Clip:
    """A 16 kHz int16 test signal and where its one utterance is (no truth: no speech at all)."""

    condition: str
    pcm: np.ndarray
    truth: np.ndarray | None = None  # per sample: inside the utterance
    start: int = 0  # first sample of the utterance
    end: int = 0  # one past its last sample


def to_int16(signal: np.ndarray) -> np.ndarray:
    return (np.clip(signal, -1.0, 1.0) * 32767).astype(np.int16)


def utterances(quick: bool) -> list[np.ndarray]:
    """Clean espeak-ng questions, every voice and rate, 16 kHz float32."""
    questions = QUESTIONS[:QUICK_QUESTIONS] if quick else QUESTIONS
    voices = VOICES[:QUICK_VOICES] if quick else VOICES
    rates = QUICK_RATES if quick else RATES_WPM
    return [synth16(q, v, r) for q in questions for v in voices for r in rates]


def speech_conditions() -> list[tuple[str, str | None, float | None, float]]:
    """(name, noise kind or None, SNR dB, speech level dBFS)."""
    conditions: list[tuple[str, str | None, float | None, float]] = [
        ("clean", None, None, SPEECH_DBFS),
        ("quiet", None, None, QUIET_DBFS),
    ]
    for kind in NOISES:
        conditions += [(f"{kind} {snr} dB", kind, snr, SPEECH_DBFS) for snr in SNRS_DB]
    return conditions


def speech_clips(quick: bool, seed: int = 13) -> list[Clip]:
    rng = np.random.default_rng(seed)
    lead = np.zeros(int(LEAD_S * SAMPLE_RATE), np.float32)
    tail = np.zeros(int(TAIL_S * SAMPLE_RATE), np.float32)
    speech_items = utterances(quick)
    clips = []
    for name, kind, snr, level in speech_conditions():
        for speech in speech_items:
            clean = np.concatenate([lead, speech, tail])
            truth = speech_mask(clean)
            clean = at_dbfs(clean, active_rms(clean, truth), level)
            signal = clean + at_dbfs(white(len(clean), rng), 1.0, MIC_FLOOR_DBFS)
            if kind is not None and snr is not None:
                signal += at_dbfs(NOISES[kind](len(clean), rng), 1.0, level - snr)
            where = np.flatnonzero(truth)
            clips.append(Clip(name, to_int16(signal), truth, int(where[0]), int(where[-1]) + 1))
    return clips


def own_voice(n: int, rng: np.random.Generator) -> np.ndarray:
    """The server's answers in its own voices with a conversation's pauses, unit RMS over the
    speech."""
    from tts.espeak_backend import VOICES as SERVER_VOICES

    parts, length = [], 0
    while length < n:
        spec = SERVER_VOICES[ECHO_VOICES[int(rng.integers(len(ECHO_VOICES)))]]
        text = ANSWERS[int(rng.integers(len(ANSWERS)))]
        speech = synth16(text, spec.espeak_voice, int(175 * spec.tempo), spec.pitch)
        speech /= max(1e-9, active_rms(speech, speech_mask(speech)))
        gap = np.zeros(int(rng.uniform(0.3, 1.5) * SAMPLE_RATE), np.float32)
        parts += [speech, gap]
        length += len(speech) + len(gap)
    return np.concatenate(parts)[:n]


def noise_only_clips(quick: bool, seed: int = 17) -> list[Clip]:
    rng = np.random.default_rng(seed)
    n = int((QUICK_NOISE_ONLY_S if quick else NOISE_ONLY_S) * SAMPLE_RATE)
    floor = at_dbfs(white(n, rng), 1.0, MIC_FLOOR_DBFS)
    clips = []
    for kind, make in NOISES.items():
        base = make(n, rng)
        for snr in NOISE_ONLY_SNRS_DB:
            signal = at_dbfs(base, 1.0, SPEECH_DBFS - snr) + floor
            clips.append(Clip(f"{kind} @{snr} dB SNR", to_int16(signal)))
    voice = own_voice(n, rng)
    for below in ECHO_BELOW_DB:
        signal = at_dbfs(voice, 1.0, SPEECH_DBFS - below) + floor
        clips.append(Clip(f"own voice -{below} dB", to_int16(signal)))
    return clips


# --- the server's onset and end-of-speech rule ---------------------------------------------


@dataclass
class Turn:
    onset: int  # the frame whose verdict started it
    last_speech: int  # its last speech frame
    end: int | None = None  # the frame that completed the silence window (None: still open)


@dataclass
class Trace:
    """What the detector did on one clip, in frames of the classifier's size."""

    labels: np.ndarray
    turns: list[Turn] = field(default_factory=list)


def run_detector(classifier: SpeechClassifier, pcm: np.ndarray) -> Trace:
    """The server's rule over the classifier's labels: onset when `onset_needed` of the last
    `onset_window` frames and the newest are speech; end after SILENCE_MS of non-speech."""
    n = classifier.frame_samples
    labels = np.zeros(len(pcm) // n, bool)
    window: deque[bool] = deque(maxlen=classifier.onset_window)
    silence_frames = int(np.ceil(SILENCE_MS / classifier.frame_ms))
    trace = Trace(labels)
    turn: Turn | None = None
    silent = 0
    for i in range(len(labels)):
        speech = classifier.is_speech(pcm[i * n : (i + 1) * n])
        labels[i] = speech
        window.append(speech)
        if turn is None:
            if speech and sum(window) >= classifier.onset_needed:
                turn, silent = Turn(i, i), 0
                trace.turns.append(turn)
        elif speech:
            turn.last_speech, silent = i, 0
        else:
            silent += 1
            if silent >= silence_frames:
                turn.end, turn = i, None
                window.clear()
    return trace


# --- measures ------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float | None:
    return float(np.percentile(values, p)) if values else None


def speech_measures(make: Callable[[], SpeechClassifier], clips: list[Clip]) -> dict[str, Any]:
    """Over one condition's clips: missed utterances, turns the noise started (open before the
    speech began) or never let end (still open TAIL_S after it), splits, frame misses and the
    onset and offset delays of the turns that began and ended on the speech itself."""
    missed = splits = started_by_noise = never_ended = 0
    onset_ms: list[float] = []
    offset_ms: list[float] = []
    truth_frames = missed_frames = 0
    for clip in clips:
        assert clip.truth is not None
        classifier = make()
        trace = run_detector(classifier, clip.pcm)
        n, frame_ms = classifier.frame_samples, classifier.frame_ms
        covered = clip.truth[: len(trace.labels) * n].reshape(-1, n).mean(axis=1) >= 0.5
        truth_frames += int(covered.sum())
        missed_frames += int((covered & ~trace.labels).sum())
        first, last = clip.start // n, (clip.end - 1) // n
        overlapping = [
            t for t in trace.turns if t.onset <= last and (t.end is None or t.end >= first)
        ]
        if not overlapping:
            missed += 1
            continue
        splits += len(overlapping) > 1
        if overlapping[0].onset < first:
            started_by_noise += 1
        else:
            onset_end_ms = (overlapping[0].onset + 1) * frame_ms
            onset_ms.append(onset_end_ms - clip.start * 1000 / SAMPLE_RATE)
        if overlapping[-1].end is None:
            never_ended += 1
        else:
            speech_end_ms = (overlapping[-1].last_speech + 1) * frame_ms
            offset_ms.append(speech_end_ms - clip.end * 1000 / SAMPLE_RATE)
    count = len(clips)
    return {
        "utterances": count,
        "missed_utterances": missed / count,
        "missed_speech_frames": missed_frames / max(1, truth_frames),
        "split_utterances": splits / count,
        "started_by_noise": started_by_noise / count,
        "never_ended": never_ended / count,
        "onset_delay_p50_ms": percentile(onset_ms, 50),
        "onset_delay_p95_ms": percentile(onset_ms, 95),
        "offset_delay_p50_ms": percentile(offset_ms, 50),
        "offset_delay_p95_ms": percentile(offset_ms, 95),
    }


def noise_measures(make: Callable[[], SpeechClassifier], clip: Clip) -> dict[str, Any]:
    trace = run_detector(make(), clip.pcm)
    minutes = len(clip.pcm) / SAMPLE_RATE / 60
    return {
        "minutes": minutes,
        "false_onsets_per_minute": len(trace.turns) / minutes,
        "speech_share": float(trace.labels.mean()),
    }


def by_condition(clips: Iterable[Clip]) -> dict[str, list[Clip]]:
    grouped: dict[str, list[Clip]] = {}
    for clip in clips:
        grouped.setdefault(clip.condition, []).append(clip)
    return grouped


@dataclass(frozen=True)
class Setting:
    name: str
    kind: str
    threshold: float
    onset: tuple[int, int] | None = None  # a Silero onset rule other than the default

    def make(self) -> SpeechClassifier:
        classifier = make_classifier(self.kind, self.threshold)
        if self.onset is not None:
            classifier.onset_window, classifier.onset_needed = self.onset
        return classifier


def settings(include_onset_rules: bool) -> list[Setting]:
    rows = [Setting(f"{k} {t}", k, t) for k in VAD_KINDS for t in THRESHOLDS]
    if include_onset_rules:
        default = (SileroClassifier.onset_window, SileroClassifier.onset_needed)
        rows += [
            Setting(f"silero 0.5 onset {w}/{n}", "silero", 0.5, (w, n))
            for w, n in SILERO_ONSET_RULES
            if (w, n) != default
        ]
    return rows


def measure_setting(
    setting: Setting, speech: dict[str, list[Clip]], noise: list[Clip]
) -> dict[str, Any]:
    speech_rows = {name: speech_measures(setting.make, clips) for name, clips in speech.items()}
    noise_rows = {clip.condition: noise_measures(setting.make, clip) for clip in noise}
    probe = setting.make()
    return {
        "setting": setting.name,
        "kind": setting.kind,
        "threshold": setting.threshold,
        "onset_window": probe.onset_window,
        "onset_needed": probe.onset_needed,
        "speech": speech_rows,
        "noise": noise_rows,
        "summary": summary(speech_rows, noise_rows),
    }


def summary(speech: dict[str, dict[str, Any]], noise: dict[str, dict[str, Any]]) -> dict:
    def mean(rows: Iterable[dict[str, Any]], key: str) -> float | None:
        values = [r[key] for r in rows if r[key] is not None]
        return statistics.fmean(values) if values else None

    voice = [r for name, r in noise.items() if name.startswith("own voice")]
    other = [r for name, r in noise.items() if not name.startswith("own voice")]
    return {
        "missed_utterances": mean(speech.values(), "missed_utterances"),
        "missed_speech_frames": mean(speech.values(), "missed_speech_frames"),
        "split_utterances": mean(speech.values(), "split_utterances"),
        "started_by_noise": mean(speech.values(), "started_by_noise"),
        "never_ended": mean(speech.values(), "never_ended"),
        "onset_delay_p50_ms": mean(speech.values(), "onset_delay_p50_ms"),
        "offset_delay_p50_ms": mean(speech.values(), "offset_delay_p50_ms"),
        "false_onsets_per_minute_noise": mean(other, "false_onsets_per_minute"),
        "false_onsets_per_minute_own_voice": mean(voice, "false_onsets_per_minute"),
    }


def frame_cost_us() -> dict[str, float]:
    """Median over SPEED_RUNS runs of the microseconds one frame takes to classify (wall and
    CPU time)."""
    rng = np.random.default_rng(5)
    costs = {}
    for kind in VAD_KINDS:
        classifier = make_classifier(kind, 0.5)
        n = classifier.frame_samples
        pcm = to_int16(at_dbfs(pink(n * SPEED_FRAMES, rng), 1.0, -30))
        frames = [pcm[i * n : (i + 1) * n] for i in range(SPEED_FRAMES)]
        wall, cpu = [], []
        for _ in range(SPEED_RUNS):
            started, started_cpu = time.perf_counter(), time.thread_time()
            for frame in frames:
                classifier.probability(frame)
            wall.append((time.perf_counter() - started) / SPEED_FRAMES * 1e6)
            cpu.append((time.thread_time() - started_cpu) / SPEED_FRAMES * 1e6)
        costs[kind] = statistics.median(wall)
        # CPU time of this thread (both run single-threaded in the caller): the cost whatever
        # else the machine is doing
        costs[f"{kind}_cpu"] = statistics.median(cpu)
        costs[f"{kind}_share_of_one_core"] = costs[f"{kind}_cpu"] / (classifier.frame_ms * 1000)
    return costs


# --- output --------------------------------------------------------------------------------


def fmt(value: float | None, scale: float = 1.0, digits: int = 0) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


def print_tables(report: dict[str, Any]) -> None:
    rows = report["settings"]
    print(
        "\nSpeech, per condition: missed utterances % / turns started by the noise % / turns "
        "never ended % / onset p50 ms / offset p50 ms"
    )
    conditions = list(rows[0]["speech"])
    print(f"{'setting':<24}" + "".join(f"{c:>20}" for c in conditions))
    for row in rows:
        cells = [
            f"{fmt(m['missed_utterances'], 100)}/{fmt(m['started_by_noise'], 100)}/"
            f"{fmt(m['never_ended'], 100)}/{fmt(m['onset_delay_p50_ms'])}/"
            f"{fmt(m['offset_delay_p50_ms'])}"
            for m in (row["speech"][c] for c in conditions)
        ]
        print(f"{row['setting']:<24}" + "".join(f"{c:>20}" for c in cells))
    print("\nNo user speech: false onsets per minute (share of time called speech %)")
    noises = list(rows[0]["noise"])
    print(f"{'setting':<24}" + "".join(f"{c:>19}" for c in noises))
    for row in rows:
        cells = [
            f"{fmt(m['false_onsets_per_minute'], digits=1)} ({fmt(m['speech_share'], 100)})"
            for m in (row["noise"][c] for c in noises)
        ]
        print(f"{row['setting']:<24}" + "".join(f"{c:>19}" for c in cells))
    print("\nSummary: means over conditions (FO = false onsets)")
    head = (
        "missed utt %",
        "missed fr %",
        "split %",
        "by noise %",
        "never end %",
        "onset ms",
        "offset ms",
        "FO/min noise",
        "FO/min voice",
    )
    print(f"{'setting':<24}" + "".join(f"{h:>13}" for h in head))
    for row in rows:
        s = row["summary"]
        figures = (
            fmt(s["missed_utterances"], 100, 1),
            fmt(s["missed_speech_frames"], 100, 1),
            fmt(s["split_utterances"], 100, 1),
            fmt(s["started_by_noise"], 100, 1),
            fmt(s["never_ended"], 100, 1),
            fmt(s["onset_delay_p50_ms"]),
            fmt(s["offset_delay_p50_ms"]),
            fmt(s["false_onsets_per_minute_noise"], digits=1),
            fmt(s["false_onsets_per_minute_own_voice"], digits=1),
        )
        print(f"{row['setting']:<24}" + "".join(f"{c:>13}" for c in figures))
    cost = report["frame_cost_us"]
    parts = [
        f"{k} {cost[k]:.0f} us per {ms} ms frame, CPU {cost[k + '_cpu']:.0f} us "
        f"({cost[k + '_share_of_one_core']:.2%} of a core)"
        for k, ms in zip(VAD_KINDS, (30, 32), strict=True)
    ]
    print("\nclassifying one frame: " + ", ".join(parts))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer clips, shorter noise")
    parser.add_argument(
        "--no-onset-rules", action="store_true", help="skip the Silero onset-rule comparison"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "vad.json")
    args = parser.parse_args(argv)
    started = time.monotonic()
    speech = by_condition(speech_clips(args.quick))
    noise = noise_only_clips(args.quick)
    print(f"audio made in {time.monotonic() - started:.0f} s", flush=True)
    rows = []
    for setting in settings(not args.no_onset_rules):
        rows.append(measure_setting(setting, speech, noise))
        print(f"{setting.name}: done ({time.monotonic() - started:.0f} s)", flush=True)
    arguments = argv if argv is not None else sys.argv[1:]
    report = {
        "command": " ".join(["python -m benchmarks.vad", *arguments]),
        "config": {
            "silence_duration_ms": SILENCE_MS,
            "speech_dbfs": SPEECH_DBFS,
            "quiet_dbfs": QUIET_DBFS,
            "mic_floor_dbfs": MIC_FLOOR_DBFS,
            "utterances_per_condition": len(next(iter(speech.values()))),
            "noise_only_seconds": len(noise[0].pcm) / SAMPLE_RATE,
            "voices": VOICES,
            "rates_wpm": RATES_WPM,
            "quick": args.quick,
        },
        "frame_cost_us": frame_cost_us(),
        "settings": rows,
    }
    print_tables(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
