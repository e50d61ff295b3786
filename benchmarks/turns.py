"""Turn-taking end to end: what each turn detection costs in cut-off questions and buys in latency.

One fixed set of spoken arithmetic questions, each in two forms: plain, and with mid-sentence
pauses of 300-900 ms cut into the one spoken sentence at word boundaries ("what is seventeen
... minus eight": the words before a pause keep the intonation of a sentence that goes on; two
halves spoken apart would each end falling, which no detector should call unfinished), each
with and without background noise (pink noise at 15 dB SNR, kept up through the trailing
silence as a real microphone would), in espeak-ng voices (several voices and rates) and in the
Piper voice (`--voices`). Every question is streamed in real time, one session per question,
over a real WebSocket to the server (`step-realtime serve` on the embedded default model, in
its own process), under each setting (`--settings`): the first release's default
(`server_vad:500:0`: 500 ms of silence, no merging), the server's default now (`default`),
shorter silence windows with merging, and `semantic_vad`; with each speech classifier the
server offers (its `--vad webrtc|silero` flag).

Per setting, voice family and form:
- client-side first-packet latency (end of the question's speech as sent -> first audio of the
  reply to the final commit), p50/p95, and the endpoint delay (-> the final commit arrived);
- questions answered right: the reply to the final commit states the result (a question cut in
  two and not merged is answered from its second half, which is wrong);
- premature commits: questions the server committed before they ended (a commit whose
  `audio_end_ms` falls before the question's last speech);
- merges: turns the server took back into the speech that followed (their user item deleted),
  and the wrong audio heard before each: what a client playing the withdrawn reply in real time
  from its first delta had played when the next `speech_started` arrived (median and p95).

`--load 1,32` also runs `benchmarks.load` at those user counts on the server's defaults in the
same run (its first-packet percentiles under concurrency).

Also the end-of-turn model alone (Smart Turn v3.2, `streaming.turns.end_of_turn`): latency on
1, 4 and 8 s of audio (median of several runs) and its verdicts on complete questions against
the same questions cut mid-utterance.

    python -m benchmarks.turns                      # everything the server accepts
    python -m benchmarks.turns --quick              # a smoke run: 4 questions, 2 settings
    python -m benchmarks.turns --end-of-turn-only   # the model alone, no server
    python -m benchmarks.turns --vad webrtc --settings server_vad:500:0,semantic_vad:auto
    python -m benchmarks.turns --vad silero --voices espeak,piper --load 1,32   # the issue's run

Rows the server refuses (a `semantic_vad` it does not implement, a `--vad` flag it does not
have) are reported as not run, with the server's words. Prints a table, writes
benchmarks/results/turns.json and turns.png (first-packet latency against premature-commit
rate, one point per setting).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "clients"))  # the client's source

from benchmarks.server_process import (  # noqa: E402
    REPOSITORY,
    free_port,
    stop_process,
    wait_ready,
)
from step_realtime_client import RealtimeClient, RealtimeError  # noqa: E402
from step_realtime_client.audio import WIRE_SAMPLE_RATE, speech_end  # noqa: E402
from step_realtime_client.client import CHUNK_MS, chunks_of  # noqa: E402
from step_realtime_client.events import (  # noqa: E402
    AudioDelta,
    ErrorEvent,
    InputCommitted,
    ItemDeleted,
    ResponseCreated,
    ResponseDone,
    ServerEvent,
    SpeechStarted,
    SpeechStopped,
    TranscriptDelta,
)

RESULTS = Path(__file__).parent / "results"
VAD_KINDS = ("webrtc", "silero")
# The first release's default (500 ms, no merging), the server's default now, shorter windows
# with merging, and semantic_vad (merging on, its default).
SETTINGS = (
    "server_vad:500:0",
    "default",
    "server_vad:300",
    "server_vad:200",
    "semantic_vad:auto",
)
QUICK_SETTINGS = ("server_vad:500:0", "default")
QUICK_ITEMS = 2  # questions of the set in a smoke run (each in its four forms)
LEAD_MS = 400  # microphone time before the question
PAUSE_MS = (300, 450, 600, 750, 900)  # mid-utterance pauses, cycled
NOISE_SNR_DB = 15.0
NOISE_TRACK_S = 20  # noise beyond the question before its track loops (one seam per loop)
SPEECH_FLOOR = 1e-3  # samples above this count toward the speech level that sets the SNR
# A commit must come within this long after the question's speech ends: semantic_vad at low
# eagerness may wait up to 8 s of silence (OpenAI's cap); anything later counts as none.
COMMIT_TIMEOUT_S = 10.0
REPLY_TIMEOUT_S = 60.0  # final commit -> response.done, on a busy two-core machine
SESSION_CLOSE_PAUSE_S = 0.2  # between questions: the server finishes the closed session
MAX_SESSIONS = 4
PERCENTILES = (50, 95)
# Voices of the embedded model's training set (the benchmark measures turn-taking, not the
# model's reach to unheard voices), with rates from slow to fast.
VOICES = (
    ("en-us", 170),
    ("en-gb", 150),
    ("en-us+klatt", 190),
    ("en-gb-scotland", 160),
    ("en-029", 180),
    ("en-us+m3", 140),
)
# The Piper voice the server ships with (`pip install step-realtime[piper]`), at its own rate:
# a voice of another kind than the model's training voices.
PIPER_VOICES = (("piper", 100),)
VOICE_FAMILIES = {"espeak": VOICES, "piper": PIPER_VOICES}
# (plain question, the same with pauses at each "|", expected result)
QUESTIONS = (
    ("what is seventeen minus eight", "what is seventeen | minus eight", 9),
    ("multiply six by four", "multiply six | by four", 24),
    ("what is twelve plus nine", "what is twelve plus | nine", 21),
    ("divide forty eight by six", "divide forty eight | by six", 8),
    ("what is seven times eight", "what is seven | times | eight", 56),
    ("add three and five", "add three | and five", 8),
    ("what is nine times seven", "what is nine | times | seven", 63),
    ("subtract four from fifteen", "subtract four | from fifteen", 11),
    ("what is twenty minus thirteen", "what is twenty | minus thirteen", 7),
    ("what is eleven plus eight", "what is | eleven | plus eight", 19),
    ("calculate twelve times three", "calculate | twelve times three", 36),
    ("what is eighteen divided by two", "what is eighteen | divided by two", 9),
)
EOT_LATENCY_SECONDS = (1.0, 4.0, 8.0)
EOT_LATENCY_RUNS = 7
EOT_TAIL_MS = 200  # silence after speech when the model is asked (pipecat's VAD stop time)
EOT_LEAD_MS = 500  # and before it (pipecat's pre-speech padding)
EOT_VOICES = VOICES[:4]


# --- the spoken questions ------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    text: str
    expected: int
    paused: bool
    noisy: bool
    voice: str
    rate_wpm: int
    speech: np.ndarray = field(repr=False)  # 24 kHz float32: lead silence + speech, no tail
    speech_end_ms: float  # end of the last speech on the stream's clock
    noise_rms: float = 0.0  # pink noise under the question and after it (0: clean)
    pauses_ms: tuple[int, ...] = ()

    @property
    def family(self) -> str:
        return "piper" if self.voice.startswith("piper") else "espeak"

    @property
    def form(self) -> str:
        return f"{'paused' if self.paused else 'plain'}, {'noisy' if self.noisy else 'clean'}"


def synth24(text: str, voice: str, rate_wpm: int) -> tuple[np.ndarray, list[float]]:
    """Speech as 24 kHz float32, and each word's start in ms: espeak-ng, or the Piper voice
    ("piper", rate in percent) through the server's own TTS stream, which times its words."""
    if voice.startswith("piper"):
        return asyncio.run(_piper24(text, rate_wpm / 100))
    import soxr

    from tts.espeak import synthesize

    pcm, native_rate, words = synthesize(text, voice, rate_wpm)
    audio = soxr.resample(pcm.astype(np.float32) / 32768.0, native_rate, WIRE_SAMPLE_RATE)
    return np.asarray(audio, np.float32), [w.start_ms for w in words]


async def _piper24(text: str, rate: float) -> tuple[np.ndarray, list[float]]:
    from tts import get_backend
    from tts.base import SAMPLE_RATE

    backend = get_backend("piper")
    try:
        stream = backend.open_stream(backend.voices()[0], rate)
        stream.feed(text)
        stream.flush()
        pcm, starts = [], []
        async for chunk in stream:
            pcm.append(chunk.pcm)
            starts += [w.start_ms for w in chunk.words]
    finally:
        await backend.close()
    assert SAMPLE_RATE == WIRE_SAMPLE_RATE
    return np.concatenate(pcm).astype(np.float32) / 32768.0, starts


def quietest_near(audio: np.ndarray, at: int, reach_ms: int = 40, window_ms: int = 5) -> int:
    """The start of the quietest `window_ms` within `reach_ms` of sample `at`: where a pause
    can be inserted without cutting into a sound."""
    reach, window = WIRE_SAMPLE_RATE * reach_ms // 1000, WIRE_SAMPLE_RATE * window_ms // 1000
    lo, hi = max(0, at - reach), min(len(audio) - window, at + reach)
    if hi <= lo:
        return at
    energy = np.convolve(audio[lo : hi + window] ** 2, np.ones(window), "valid")
    return lo + int(np.argmin(energy[: hi - lo]))


def with_pauses(marked: str, voice: str, rate: int, pauses: list[int]) -> np.ndarray:
    """The question spoken as one sentence (one intonation contour), silence inserted at each
    '|' before the word that follows it."""
    words = marked.replace("|", " ").split()
    audio, starts = synth24(" ".join(words), voice, rate)
    cut_words, count = [], 0
    for part in marked.split("|")[:-1]:
        count += len(part.split())
        cut_words.append(count)
    pieces, begin = [], 0
    for word_index, pause in zip(cut_words, pauses, strict=True):
        at = quietest_near(audio, int(starts[word_index] * WIRE_SAMPLE_RATE / 1000))
        pieces += [audio[begin:at], np.zeros(WIRE_SAMPLE_RATE * pause // 1000, np.float32)]
        begin = at
    return np.concatenate([*pieces, audio[begin:]])


def make_questions(items: int, families: tuple[str, ...] = ("espeak",)) -> list[Question]:
    """Each of the first `items` questions plain and paused, clean and noisy, in a voice of
    each family."""
    return [q for family in families for q in _questions(items, VOICE_FAMILIES[family])]


def _questions(items: int, voices: tuple[tuple[str, int], ...]) -> list[Question]:
    questions = []
    pause_cycle = itertools.cycle(PAUSE_MS)
    lead = np.zeros(WIRE_SAMPLE_RATE * LEAD_MS // 1000, np.float32)
    for index, (plain, marked, expected) in enumerate(QUESTIONS[:items]):
        for paused in (False, True):
            voice, rate = voices[(2 * index + paused) % len(voices)]
            pauses = [next(pause_cycle) for _ in range(marked.count("|"))] if paused else []
            spoken = (
                with_pauses(marked, voice, rate, pauses)
                if paused
                else synth24(plain, voice, rate)[0]
            )
            audio = np.concatenate([lead, spoken])
            end_ms = speech_end(to_int16(audio)) * 1000 / WIRE_SAMPLE_RATE
            level = float(np.sqrt(np.mean(spoken[np.abs(spoken) > SPEECH_FLOOR] ** 2)))
            for noisy in (False, True):
                noise_rms = level * 10 ** (-NOISE_SNR_DB / 20) if noisy else 0.0
                questions.append(
                    Question(
                        marked if paused else plain,
                        expected,
                        paused,
                        noisy,
                        voice,
                        rate,
                        audio,
                        end_ms,
                        noise_rms,
                        tuple(pauses),
                    )
                )
    return questions


def to_int16(audio: np.ndarray) -> np.ndarray:
    return (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)


def microphone(question: Question, seed: int) -> Iterator[np.ndarray]:
    """What the microphone sends: the question, then silence, in CHUNK_MS pieces, with the
    question's noise (one continuous pink track, looped if the wait outlasts it) under both,
    until the caller stops asking."""
    from benchmarks.vad import pink  # 1/f noise: its shape does not depend on the rate

    n = WIRE_SAMPLE_RATE * CHUNK_MS // 1000
    track_chunks = -(-(len(question.speech) + WIRE_SAMPLE_RATE * NOISE_TRACK_S) // n)
    noise = np.zeros(track_chunks * n, np.float32)
    if question.noise_rms:
        noise = pink(len(noise), np.random.default_rng(seed)) * question.noise_rms
    padded = np.zeros(len(noise), np.float32)
    padded[: len(question.speech)] = question.speech
    stream = to_int16(padded + noise)
    quiet = to_int16(noise)
    yield from chunks_of(stream)
    while True:
        yield from chunks_of(quiet)


# --- one question through the server -------------------------------------------------------


@dataclass
class Outcome:
    """What happened to one question under one setting."""

    text: str
    form: str
    paused: bool
    noisy: bool
    voice: str
    expected: int
    family: str = "espeak"
    commits_audio_end_ms: list[float | None] = field(default_factory=list)
    premature: bool = False
    merges: int = 0  # user turns the server merged into the next (their items deleted)
    wrong_heard_ms: list[float] = field(default_factory=list)  # per merge: its reply's audio
    # that reached the client before the user's speech was detected again (what it played)
    premature_reply_heard: bool = False
    final_commit: bool = False
    endpoint_s: float | None = None
    endpoint_audio_ms: float | None = None  # on the audio clock: commit point - speech end
    first_packet_s: float | None = None
    transcript: str = ""
    answer: int | None = None
    correct: bool = False
    status: str = ""
    error: str = ""


@dataclass
class Response:
    commit_index: int  # the commit it answers
    first_audio_at: float | None = None
    transcript: str = ""
    status: str = ""
    audio: list[tuple[float, float]] = field(default_factory=list)  # (arrival, ms) per delta

    def playable_ms(self, until: float) -> float:
        """What a client playing from the first delta in real time had played by `until`."""
        if self.first_audio_at is None or until <= self.first_audio_at:
            return 0.0
        received = sum(ms for at, ms in self.audio if at <= until)
        return min(received, (until - self.first_audio_at) * 1000)


class QuestionRun:
    """Follows one session's events while the question streams."""

    def __init__(self, question: Question) -> None:
        self.question = question
        self.speech_end_sent_at: float | None = None
        self.stopped_ms: dict[str, float] = {}  # item id -> speech_stopped audio_end_ms
        self.commits: list[tuple[float, float | None]] = []  # (arrival, audio_end_ms)
        self.responses: dict[str, Response] = {}
        self.final_commit: int | None = None
        self.final_done = False
        self.committed_items: list[str] = []
        self.speech_started_at: list[float] = []
        self.merged_heard_ms: list[float] = []

    def feed(self, event: ServerEvent) -> None:
        if isinstance(event, SpeechStarted):
            self.speech_started_at.append(event.received_at)
        elif isinstance(event, ItemDeleted):
            self._on_deleted(event.item_id)
        elif isinstance(event, SpeechStopped):
            self.stopped_ms[event.item_id] = float(event.audio_end_ms)
        elif isinstance(event, InputCommitted):
            self._on_commit(event)
        elif isinstance(event, ResponseCreated):
            self.responses[event.response_id] = Response(len(self.commits) - 1)
        elif isinstance(event, AudioDelta):
            response = self.responses.get(event.response_id)
            if response is not None and response.first_audio_at is None:
                response.first_audio_at = event.received_at
            if response is not None:
                ms = len(event.audio) / 2 * 1000 / WIRE_SAMPLE_RATE
                response.audio.append((event.received_at, ms))
        elif isinstance(event, TranscriptDelta):
            if event.response_id in self.responses:
                self.responses[event.response_id].transcript += event.delta
        elif isinstance(event, ResponseDone):
            self._on_done(event)

    def _on_commit(self, event: InputCommitted) -> None:
        audio_end = self.stopped_ms.get(event.item_id)
        self.commits.append((event.received_at, audio_end))
        self.committed_items.append(event.item_id)
        if self.final_commit is None and not self._is_premature(event.received_at, audio_end):
            self.final_commit = len(self.commits) - 1

    def _on_deleted(self, item_id: str) -> None:
        """A committed user turn deleted: the server merged it into the speech that followed.
        What its reply had played when that speech was detected is the wrong audio heard."""
        if item_id not in self.committed_items:
            return  # the withdrawn reply's own item
        index = self.committed_items.index(item_id)
        committed_at = self.commits[index][0]
        resumed = [at for at in self.speech_started_at if at > committed_at]
        replies = [r for r in self.responses.values() if r.commit_index == index]
        heard = max((r.playable_ms(resumed[0]) for r in replies), default=0.0) if resumed else 0.0
        self.merged_heard_ms.append(heard)

    def _on_done(self, event: ResponseDone) -> None:
        response = self.responses.get(event.response_id)
        if response is None:
            return
        response.status = event.status
        if response.commit_index == self.final_commit:
            self.final_done = True

    def _is_premature(self, arrived: float, audio_end_ms: float | None) -> bool:
        if audio_end_ms is not None:
            return audio_end_ms < self.question.speech_end_ms
        return self.speech_end_sent_at is None or arrived < self.speech_end_sent_at

    def outcome(self) -> Outcome:
        from streaming.arith.data import answer_number

        q = self.question
        result = Outcome(q.text, q.form, q.paused, q.noisy, q.voice, q.expected, q.family)
        result.commits_audio_end_ms = [end for _, end in self.commits]
        result.merges = len(self.merged_heard_ms)
        result.wrong_heard_ms = list(self.merged_heard_ms)
        early = range(len(self.commits) if self.final_commit is None else self.final_commit)
        result.premature = len(early) > 0
        result.premature_reply_heard = any(
            r.first_audio_at is not None for r in self.responses.values() if r.commit_index in early
        )
        if self.final_commit is None or self.speech_end_sent_at is None:
            result.error = "no commit after the question ended"
            return result
        arrived, audio_end = self.commits[self.final_commit]
        result.final_commit = True
        result.endpoint_s = arrived - self.speech_end_sent_at
        if audio_end is not None:
            result.endpoint_audio_ms = audio_end - q.speech_end_ms
        final = [r for r in self.responses.values() if r.commit_index == self.final_commit]
        if final:
            reply = final[0]
            result.status, result.transcript = reply.status, reply.transcript
            if reply.first_audio_at is not None:
                result.first_packet_s = reply.first_audio_at - self.speech_end_sent_at
            result.answer = answer_number(reply.transcript)
            result.correct = result.answer == q.expected
        return result


async def ask(url: str, session: dict[str, Any], question: Question, seed: int) -> Outcome:
    """Stream one question in real time in its own session; follow it to the final reply."""
    run = QuestionRun(question)
    end_sample = int(question.speech_end_ms * WIRE_SAMPLE_RATE / 1000)

    def mark(sent_at: float) -> None:
        run.speech_end_sent_at = sent_at

    async with RealtimeClient(url, session=session) as client:
        chunks = microphone(question, seed)
        speaker = asyncio.create_task(
            client.stream_chunks(chunks, mark_sample=end_sample, on_mark=mark)
        )
        try:
            await follow(client, run)
        finally:
            speaker.cancel()
            with contextlib.suppress(asyncio.CancelledError, RealtimeError):
                await speaker
    return run.outcome()


async def follow(client: RealtimeClient, run: QuestionRun) -> None:
    """Feed events to `run` until the final reply is done or a time limit passes."""
    while not run.final_done:
        now = time.monotonic()
        if run.speech_end_sent_at is not None:
            limit = COMMIT_TIMEOUT_S if run.final_commit is None else REPLY_TIMEOUT_S
            started = run.speech_end_sent_at if run.final_commit is None else run.commits[-1][0]
            wait = started + limit - now
        else:
            wait = REPLY_TIMEOUT_S  # still speaking
        if wait <= 0:
            return
        try:
            event = await client.next_event(wait)
        except TimeoutError:
            return
        if isinstance(event, ErrorEvent):
            raise RealtimeError(f"server error: {event.code}: {event.message}")
        run.feed(event)


# --- settings and the server ---------------------------------------------------------------


def session_for(setting: str, effort: str | None) -> dict[str, Any]:
    """`server_vad:500`, `semantic_vad:auto`, `default` (the server's own), each with an
    optional `:MERGE_MS` (the merge window; 0: off) -> a GA session.update body."""
    kind, _, rest = setting.partition(":")
    value, _, merge = rest.partition(":")
    if kind == "default":
        session: dict[str, Any] = {"type": "realtime"}
        return session | ({"reasoning": {"effort": effort}} if effort else {})
    if kind == "server_vad":
        detection: dict[str, Any] = {"type": "server_vad", "silence_duration_ms": int(value)}
    elif kind == "semantic_vad":
        detection = {"type": "semantic_vad", "eagerness": value}
    else:
        raise SystemExit(
            f"unknown setting {setting!r}: use default, server_vad:MS[:MERGE_MS] or "
            "semantic_vad:EAGERNESS[:MERGE_MS]"
        )
    if merge:
        detection["merge_window_ms"] = int(merge)
    session = {
        "type": "realtime",
        "audio": {"input": {"turn_detection": detection}},
    }
    if effort:
        session["reasoning"] = {"effort": effort}
    return session


def server_has_vad_flag() -> bool:
    """Whether `step-realtime serve` takes `--vad` (a field of the server's Settings)."""
    from server.settings import Settings

    return any(f.name == "vad" for f in dataclasses.fields(Settings))


@contextlib.contextmanager
def serve(vad: str | None, max_sessions: int) -> Iterator[str]:
    """`step-realtime serve` on the embedded default in a child process; yields its URL."""
    port = free_port()
    command = [sys.executable, "-m", "server", "serve", "--port", str(port)]
    command += ["--max-sessions", str(max_sessions), "--log-level", "warning"]
    command += ["--vad", vad] if vad else []
    process = subprocess.Popen(command, cwd=REPOSITORY)
    try:
        wait_ready(f"http://127.0.0.1:{port}/healthz", process)
        yield f"ws://127.0.0.1:{port}/v1/realtime"
    finally:
        stop_process(process)


async def run_setting(
    url: str, setting: str, effort: str | None, questions: list[Question]
) -> tuple[list[Outcome], str]:
    """Every question under one setting; (outcomes, why it did not run or '')."""
    session = session_for(setting, effort)
    outcomes = []
    for index, question in enumerate(questions):
        try:
            outcomes.append(await ask(url, session, question, seed=index))
        except RealtimeError as error:
            if not outcomes:
                return [], f"refused by the server: {error}"
            failed = Outcome(
                question.text,
                question.form,
                question.paused,
                question.noisy,
                question.voice,
                question.expected,
                question.family,
                error=str(error),
            )
            outcomes.append(failed)
        await asyncio.sleep(SESSION_CLOSE_PAUSE_S)
    return outcomes, ""


# --- summaries -----------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float | None:
    return float(np.percentile(values, p)) if values else None


def rate(outcomes: list[Outcome], key: str) -> float | None:
    return statistics.fmean(bool(getattr(o, key)) for o in outcomes) if outcomes else None


def summarize(outcomes: list[Outcome]) -> dict[str, Any]:
    paused = [o for o in outcomes if o.paused]
    plain = [o for o in outcomes if not o.paused]
    endpoint = [o.endpoint_s for o in outcomes if o.endpoint_s is not None]
    fpl = [o.first_packet_s for o in outcomes if o.first_packet_s is not None]
    summary: dict[str, Any] = {
        "questions": len(outcomes),
        "premature_rate": rate(outcomes, "premature"),
        "premature_rate_paused": rate(paused, "premature"),
        "premature_rate_plain": rate(plain, "premature"),
        "premature_reply_heard_rate": rate(outcomes, "premature_reply_heard"),
        "accuracy": rate(outcomes, "correct"),
        "accuracy_paused": rate(paused, "correct"),
        "accuracy_plain": rate(plain, "correct"),
        "accuracy_clean": rate([o for o in outcomes if not o.noisy], "correct"),
        "accuracy_noisy": rate([o for o in outcomes if o.noisy], "correct"),
        "no_final_commit": sum(not o.final_commit for o in outcomes),
        "errors": sorted({o.error for o in outcomes if o.error})[:5],
    }
    heard = [ms for o in outcomes for ms in o.wrong_heard_ms]
    summary["merges"] = sum(o.merges for o in outcomes)
    summary["wrong_heard_p50_ms"] = percentile(heard, 50)
    summary["wrong_heard_p95_ms"] = percentile(heard, 95)
    for p in PERCENTILES:
        summary[f"endpoint_p{p}_s"] = percentile(endpoint, p)
        summary[f"first_packet_p{p}_s"] = percentile(fpl, p)
    return summary


def summarize_groups(outcomes: list[Outcome]) -> dict[str, dict[str, Any]]:
    """`summarize` for each voice family and form ("espeak, paused, noisy"), and all of them."""
    groups: dict[str, list[Outcome]] = {}
    for o in outcomes:
        groups.setdefault(f"{o.family}, {o.form}", []).append(o)
        groups.setdefault(f"{o.family}, {'paused' if o.paused else 'plain'}", []).append(o)
    return {name: summarize(group) for name, group in sorted(groups.items())}


def fmt(value: float | None, scale: float = 1.0, digits: int = 3) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


def print_groups(rows: list[dict[str, Any]]) -> None:
    """Per setting, voice family and form: latency, answers, premature commits, merges."""
    head = ("vad", "setting", "voices, form", "n", "FPL p50", "p95", "right", "premature")
    head += ("merges", "heard p50", "heard p95", "no commit")
    print(f"{head[0]:>7} {head[1]:>16} {head[2]:>22} " + " ".join(f"{h:>9}" for h in head[3:]))
    for row in rows:
        for group, s in (row.get("groups") or {}).items():
            cells = (
                s["questions"],
                fmt(s["first_packet_p50_s"]),
                fmt(s["first_packet_p95_s"]),
                fmt(s["accuracy"], 100, 1),
                fmt(s["premature_rate"], 100, 1),
                s["merges"],
                fmt(s["wrong_heard_p50_ms"], 1, 0),
                fmt(s["wrong_heard_p95_ms"], 1, 0),
                s["no_final_commit"],
            )
            line = f"{row['vad']:>7} {row['setting']:>16} {group:>22} "
            print(line + " ".join(f"{str(c):>9}" for c in cells))
    print(
        "FPL = end of the question's speech as sent -> first audio of the reply to the final "
        "commit (s); right = that reply states the result (%); premature = questions committed "
        "before they ended (%); merges = turns the server merged into the next; heard = audio of "
        "a withdrawn reply a real-time client had played when the user's speech came back (ms)"
    )


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (
        "vad",
        "setting",
        "premature",
        "paused",
        "plain",
        "heard",
        "endpt p50",
        "p95",
        "FPL p50",
        "p95",
        "acc",
        "acc paused",
        "acc plain",
        "no commit",
    )
    print(" ".join(f"{h:>12}" for h in head))
    for row in rows:
        s = row.get("summary")
        if not s:
            print(f"{row['vad']:>12} {row['setting']:>12}  not run: {row['not_run']}")
            continue
        cells = (
            row["vad"],
            row["setting"],
            fmt(s["premature_rate"], 100, 1),
            fmt(s["premature_rate_paused"], 100, 1),
            fmt(s["premature_rate_plain"], 100, 1),
            fmt(s["premature_reply_heard_rate"], 100, 1),
            fmt(s["endpoint_p50_s"]),
            fmt(s["endpoint_p95_s"]),
            fmt(s["first_packet_p50_s"]),
            fmt(s["first_packet_p95_s"]),
            fmt(s["accuracy"], 100, 1),
            fmt(s["accuracy_paused"], 100, 1),
            fmt(s["accuracy_plain"], 100, 1),
            s["no_final_commit"],
        )
        print(" ".join(f"{str(c):>12}" for c in cells))
    print(
        "premature = % of questions committed before they ended (paused / plain sets); heard = "
        "a reply to such a commit sent audio;\nendpt = end of speech as sent -> final commit "
        "arrived; FPL = -> first audio of its reply (client side, seconds); acc = reply states "
        "the right result"
    )


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """First-packet latency p50 (filled) and p95 (hollow) against the paused questions answered
    right: one colour per setting, one marker per speech classifier (lower right is better)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    fig, ax = plt.subplots(figsize=(10, 5.5))
    markers = {"webrtc": "o", "silero": "s"}
    settings = sorted({row["setting"] for row in rows})
    colours = {setting: f"C{i % 10}" for i, setting in enumerate(settings)}
    for row in rows:
        s = row.get("summary")
        if not s or s["first_packet_p50_s"] is None:
            continue
        x = 100 * (s["accuracy_paused"] or 0.0)
        y50, y95 = s["first_packet_p50_s"], s["first_packet_p95_s"]
        marker, colour = markers.get(row["vad"], "^"), colours.get(row["setting"], "k")
        label = f"{row['vad']} {row['setting']}"
        ax.plot([x, x], [y50, y95], "-", linewidth=0.8, alpha=0.5, color=colour)
        ax.plot([x], [y50], linestyle="none", marker=marker, color=colour, label=label)
        ax.plot([x], [y95], linestyle="none", marker=marker, color=colour, markerfacecolor="none")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(ScalarFormatter())
    ax.set_xlabel("paused questions answered right (%)")
    ax.set_ylabel("client first-packet latency (s): p50 filled, p95 hollow")
    ax.set_title(
        "Turn detection: latency against answering paused questions right (embedded default)",
        fontsize=10,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --- the end-of-turn model alone -----------------------------------------------------------


def end_of_turn_report() -> dict[str, Any]:
    """Smart Turn's latency by audio length, and its verdicts on complete and cut questions."""
    from streaming.turns.end_of_turn import COMPLETE_PROBABILITY, EndOfTurnModel

    model = EndOfTurnModel(threads=1)
    rng = np.random.default_rng(3)
    latency = {}
    for seconds in EOT_LATENCY_SECONDS:
        audio = (rng.standard_normal(int(seconds * 16_000)) * 0.05).astype(np.float32)
        model.probability(audio)  # warm-up
        wall, cpu = [], []
        for _ in range(EOT_LATENCY_RUNS):
            started, started_cpu = time.perf_counter(), time.thread_time()
            model.probability(audio)
            wall.append(time.perf_counter() - started)
            cpu.append(time.thread_time() - started_cpu)
        latency[f"{seconds:g}s"] = {
            "median_ms": 1000 * statistics.median(wall),
            "min_ms": 1000 * min(wall),
            "max_ms": 1000 * max(wall),
            # CPU time of the calling thread (onnxruntime runs a one-thread session there):
            # what a call costs whatever else the machine is doing
            "cpu_median_ms": 1000 * statistics.median(cpu),
        }

    def share(values: list[float]) -> float:
        return statistics.fmean(p >= COMPLETE_PROBABILITY for p in values)

    report: dict[str, Any] = {"latency": latency, "threads": 1}
    for family, voices in (("espeak", EOT_VOICES), ("piper", PIPER_VOICES)):
        full, cut = verdicts(model, voices)
        report[family] = {
            "complete_questions": {
                "n": len(full),
                "mean_probability": statistics.fmean(full),
                "judged_complete": share(full),
            },
            "cut_questions": {
                "n": len(cut),
                "mean_probability": statistics.fmean(cut),
                "judged_complete": share(cut),
            },
            "voices": [v for v, _ in voices],
        }
    report["cut_at"] = "every word boundary inside the question, the words before it as spoken"
    return report


def verdicts(model: Any, voices: tuple[tuple[str, int], ...]) -> tuple[list[float], list[float]]:
    """P(complete) for each plain question in each voice, whole and cut at each inner word."""
    import soxr

    lead = np.zeros(16 * EOT_LEAD_MS, np.float32)
    tail = np.zeros(16 * EOT_TAIL_MS, np.float32)
    full, cut = [], []
    for plain, _, _ in QUESTIONS:
        for voice, rate in voices:
            speech, starts = synth24(plain, voice, rate)
            audio = soxr.resample(speech, WIRE_SAMPLE_RATE, 16_000)
            full.append(model.probability(np.concatenate([lead, audio, tail])))
            for start_ms in starts[1:]:
                end = int(start_ms * 16)
                cut.append(model.probability(np.concatenate([lead, audio[:end], tail])))
    return full, cut


def print_end_of_turn(report: dict[str, Any]) -> None:
    print("Smart Turn v3.2 (one thread):")
    for length, row in report["latency"].items():
        print(
            f"  {length:>4} of audio: median {row['median_ms']:.1f} ms "
            f"(min {row['min_ms']:.1f}, max {row['max_ms']:.1f}; CPU {row['cpu_median_ms']:.1f} ms)"
        )
    for family in ("espeak", "piper"):
        for kind in ("complete_questions", "cut_questions"):
            row = report[family][kind]
            print(
                f"  {family:<6} {kind.replace('_', ' '):<19} n={row['n']:<4} mean P(complete) "
                f"{row['mean_probability']:.2f}, judged complete {row['judged_complete']:.0%}"
            )


# --- entry point ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--vad",
        default=",".join(VAD_KINDS),
        help="speech classifiers to serve with, comma-separated (%(default)s)",
    )
    parser.add_argument(
        "--settings",
        default=",".join(SETTINGS),
        help="server_vad:MS and semantic_vad:EAGERNESS, comma-separated",
    )
    parser.add_argument(
        "--items", type=int, default=len(QUESTIONS), help="questions of the set (each in 4 forms)"
    )
    parser.add_argument(
        "--voices",
        default="espeak,piper",
        help="voice families the questions are spoken in, comma-separated (%(default)s)",
    )
    parser.add_argument(
        "--load",
        default="",
        help="also run `benchmarks.load` at these user counts on the server's defaults, in "
        "the same run (e.g. 1,32)",
    )
    parser.add_argument("--effort", help="session reasoning effort (default: the server's)")
    parser.add_argument("--quick", action="store_true", help="2 questions, 2 settings, webrtc")
    parser.add_argument(
        "--end-of-turn-only",
        action="store_true",
        help="only the end-of-turn model's latency and verdicts",
    )
    parser.add_argument("--name", default="turns", help="results file stem (%(default)s)")
    parser.add_argument(
        "--replot", action="store_true", help="only redraw NAME.png from an existing NAME.json"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.items, args.settings, args.vad = QUICK_ITEMS, ",".join(QUICK_SETTINGS), "webrtc"
        args.voices = "espeak"
    return args


def run_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    questions = make_questions(args.items, tuple(v for v in args.voices.split(",") if v))
    settings = [s for s in args.settings.split(",") if s]
    has_flag = server_has_vad_flag()
    rows: list[dict[str, Any]] = []
    for vad in [v for v in args.vad.split(",") if v]:
        if not has_flag and vad != "webrtc":
            rows += [
                {"vad": vad, "setting": s, "not_run": "the server has no --vad flag yet"}
                for s in settings
            ]
            continue
        with serve(vad if has_flag else None, MAX_SESSIONS) as url:
            for setting in settings:
                started = time.monotonic()
                outcomes, why = asyncio.run(run_setting(url, setting, args.effort, questions))
                row: dict[str, Any] = {"vad": vad, "setting": setting}
                if why:
                    row["not_run"] = why
                else:
                    row["summary"] = summarize(outcomes)
                    row["groups"] = summarize_groups(outcomes)
                    row["outcomes"] = [dataclasses.asdict(o) for o in outcomes]
                rows.append(row)
                print(
                    f"{vad} {setting}: {why or 'done'} ({time.monotonic() - started:.0f} s)",
                    flush=True,
                )
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.replot:
        rows = json.loads((RESULTS / f"{args.name}.json").read_text())["rows"]
        plot(rows, RESULTS / f"{args.name}.png")
        print(f"wrote {RESULTS / (args.name + '.png')}")
        return 0
    arguments = argv if argv is not None else sys.argv[1:]
    report: dict[str, Any] = {
        "command": " ".join(["python -m benchmarks.turns", *arguments]),
        "load_average_start": os.getloadavg(),
        "end_of_turn": end_of_turn_report(),
    }
    print_end_of_turn(report["end_of_turn"])
    if not args.end_of_turn_only:
        report["config"] = {
            "items": args.items,
            "noise": f"pink, {NOISE_SNR_DB:g} dB SNR",
            "pauses_ms": PAUSE_MS,
            "lead_ms": LEAD_MS,
            "effort": args.effort,
            "voices": {family: VOICE_FAMILIES[family] for family in args.voices.split(",")},
            "server_has_vad_flag": server_has_vad_flag(),
        }
        report["rows"] = run_all(args)
        print_table(report["rows"])
        print_groups(report["rows"])
    if args.load:
        from benchmarks import load

        load_args = ["--users", args.load, "--turns", "2", "--name", f"{args.name}-load"]
        load.main(load_args)
        report["load"] = json.loads((RESULTS / f"{args.name}-load.json").read_text())
    report["load_average_end"] = os.getloadavg()
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{args.name}.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    if not args.end_of_turn_only:
        plot(report["rows"], RESULTS / f"{args.name}.png")
    print(f"wrote {out}" + ("" if args.end_of_turn_only else f" and {args.name}.png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
