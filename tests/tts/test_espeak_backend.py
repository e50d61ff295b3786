"""The streaming espeak backend end to end: real worker processes, real espeak-ng, real soxr."""

import asyncio
import re
from collections.abc import Iterator

import numpy as np
import pytest

from tts import get_backend
from tts.base import SAMPLE_RATE, AudioChunk
from tts.espeak_backend import VOICES, EspeakBackend
from tts.espeak_pool import SynthFailed

ANSWER = (
    "Sure! The answer is **42**, because $6 \\times 7 = 42$. "
    "See https://example.com/docs for more, e.g. the 3.5 km walk on 2024-03-15.\n"
    "- first point\n- second point"
)
LONG_ANSWER = " ".join(["This sentence is one of many in a long answer, spoken slowly."] * 30)


@pytest.fixture(scope="module")
def backend() -> Iterator[EspeakBackend]:
    backend = EspeakBackend(max_workers=2)
    yield backend
    asyncio.run(backend.close())


@pytest.fixture
def single_worker() -> Iterator[EspeakBackend]:
    backend = EspeakBackend(max_workers=1)
    yield backend
    asyncio.run(backend.close())


def _tokens(text: str) -> list[str]:
    return re.findall(r"\S+\s*|\s+", text)


async def _speak(
    backend: EspeakBackend, text: str, voice: str = "alloy", rate: float = 1.0
) -> list[AudioChunk]:
    stream = backend.open_stream(voice, rate)
    for token in _tokens(text):
        stream.feed(token)
    stream.flush()
    return [chunk async for chunk in stream]


async def test_stream_speaks_with_word_timings_that_map_to_the_text(backend: EspeakBackend) -> None:
    chunks = await _speak(backend, ANSWER)
    assert all(c.pcm.dtype == np.int16 and c.pcm.ndim == 1 for c in chunks)
    audio_ms = sum(len(c.pcm) for c in chunks) / SAMPLE_RATE * 1000
    words = [w for c in chunks for w in c.words]
    assert audio_ms > 5000
    for word in words:
        assert ANSWER[word.start_char : word.end_char] == word.word
        assert word.start_ms < word.end_ms
    assert [w.start_ms for w in words] == sorted(w.start_ms for w in words)
    assert all(
        a.end_ms == pytest.approx(b.start_ms) for a, b in zip(words, words[1:], strict=False)
    )
    assert words[0].start_ms == 0
    assert words[-1].end_ms == pytest.approx(audio_ms, abs=5)
    spoken_chars = {i for w in words for i in range(w.start_char, w.end_char)}
    written_words = [m for m in re.finditer(r"[A-Za-z0-9]+", ANSWER) if m.group() not in {"times"}]
    missing = [m.group() for m in written_words if m.start() not in spoken_chars]
    assert missing == []  # every written word is covered by a timing
    spans = {w.word for w in words}
    assert {"42", "https://example.com/docs", "e.g.", "3.5 km", "2024-03-15"} <= spans


async def test_words_arrive_with_the_audio_that_holds_them(backend: EspeakBackend) -> None:
    chunks = await _speak(backend, "One, two three four five six seven. Eight nine ten.")
    position_ms = 0.0
    for chunk in chunks:
        for word in chunk.words:
            assert word.start_ms >= position_ms - 20  # resampler delay
        position_ms += len(chunk.pcm) / SAMPLE_RATE * 1000
        assert all(w.start_ms <= position_ms + 20 for w in chunk.words)


async def test_unknown_voice_lists_the_valid_ones(backend: EspeakBackend) -> None:
    with pytest.raises(ValueError, match="unknown voice 'nova'") as error:
        backend.open_stream("nova")
    assert all(name in str(error.value) for name in VOICES)


async def test_every_voice_speaks(backend: EspeakBackend) -> None:
    assert backend.voices() == list(VOICES)
    lengths = {
        voice: sum(len(c.pcm) for c in await _speak(backend, "Hello there.", voice))
        for voice in VOICES
    }
    assert all(length > SAMPLE_RATE // 4 for length in lengths.values())
    assert len(set(lengths.values())) > 3  # the voices really differ


async def test_rate_scales_speed(backend: EspeakBackend) -> None:
    normal = sum(len(c.pcm) for c in await _speak(backend, LONG_ANSWER[:300]))
    fast = sum(len(c.pcm) for c in await _speak(backend, LONG_ANSWER[:300], rate=2.0))
    assert fast < 0.7 * normal


async def test_cancel_stops_audio_and_frees_the_worker(single_worker: EspeakBackend) -> None:
    stream = single_worker.open_stream("echo")
    stream.feed(LONG_ANSWER)
    stream.flush()
    iterator = aiter(stream)
    first = await anext(iterator)
    assert len(first.pcm) > 0
    await stream.cancel()
    assert [chunk async for chunk in iterator] == []  # nothing after cancel returned
    after = await _speak(single_worker, "Still here.")  # the only worker serves the next stream
    assert sum(len(c.pcm) for c in after) > 0


async def test_cancel_while_another_stream_holds_the_worker(single_worker: EspeakBackend) -> None:
    busy = single_worker.open_stream("alloy")
    busy.feed(LONG_ANSWER)
    busy.flush()
    waiting = single_worker.open_stream("coral")
    waiting.feed("I wait for the worker. ")
    waiting.flush()
    busy_audio = asyncio.ensure_future(_collect(busy))
    await asyncio.sleep(0)
    await waiting.cancel()
    assert [chunk async for chunk in waiting] == []
    assert sum(len(c.pcm) for c in await busy_audio) > 0
    assert sum(len(c.pcm) for c in await _speak(single_worker, "Next one.")) > 0


async def test_a_crashed_worker_fails_its_stream_and_is_replaced(
    single_worker: EspeakBackend,
) -> None:
    worker = single_worker._pool._idle[0]
    worker.process.kill()
    worker.process.wait()
    stream = single_worker.open_stream("alloy")
    stream.feed("Hello there.")
    stream.flush()
    with pytest.raises(SynthFailed, match="worker exited"):
        _ = [chunk async for chunk in stream]
    assert sum(len(c.pcm) for c in await _speak(single_worker, "Again.")) > 0


async def test_cancel_before_anything_is_fed(backend: EspeakBackend) -> None:
    stream = backend.open_stream("sage")
    await stream.cancel()
    assert [chunk async for chunk in stream] == []


async def test_concurrent_streams_each_get_their_own_speech(backend: EspeakBackend) -> None:
    texts = [f"Stream number {i} says {i} times {i} is {i * i}." for i in range(8)]
    voices = list(VOICES)
    results = await asyncio.gather(*(_speak(backend, t, voices[i]) for i, t in enumerate(texts)))
    for text, chunks in zip(texts, results, strict=True):
        words = [w.word for c in chunks for w in c.words]
        assert words == re.findall(r"[\w*]+", text)


async def test_an_empty_answer_gives_no_audio(backend: EspeakBackend) -> None:
    assert await _speak(backend, "") == []
    assert await _speak(backend, "  🎉 \n") == []


async def test_feed_after_flush_is_an_error(backend: EspeakBackend) -> None:
    stream = backend.open_stream("alloy")
    stream.flush()
    with pytest.raises(RuntimeError):
        stream.feed("late")
    await stream.cancel()


def test_get_backend() -> None:
    with pytest.raises(ValueError, match="espeak"):
        get_backend("nope")


async def _collect(stream) -> list[AudioChunk]:
    return [chunk async for chunk in stream]
