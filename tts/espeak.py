"""espeak-ng through ctypes, from the library and voice data shipped in the `espeakng-loader` wheel.

Stable API (other parts of the project build on it; keep it compatible):

    synthesize(text, voice="en-us", rate_wpm=175, pitch=50) -> (pcm int16, sample_rate, words)
    Espeak(...).synth(text, on_audio)                          streaming, one instance per process

`synthesize` is the plain synchronous helper used to make test speech and training data: it runs
an instance in the calling process, serialised by a lock, because espeak-ng keeps global state
and is not thread-safe. The streaming backend runs one `Espeak` per worker process instead
(see `tts.espeak_pool`).

Synthesis goes through the synth callback (AUDIO_OUTPUT_SYNCHRONOUS): espeak hands over audio
buffers as it produces them, each with the events that fall inside it. Word events give the
1-based character position and length of the word in the text and its first sample.
"""

from __future__ import annotations

import ctypes
import functools
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import espeakng_loader
import numpy as np

from tts.base import WordTiming

NATIVE_SAMPLE_RATE = 22_050  # espeak-ng's own rate; espeak_Initialize reports it
BUFFER_MS = 50  # audio per callback: the streaming granularity
DEFAULT_RATE_WPM = 175
MIN_RATE_WPM, MAX_RATE_WPM = 80, 450  # espeak-ng's accepted range
DEFAULT_PITCH = 50  # 0..100

# speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
# What ended a clause: espeak leaves its pointer a character past the space after it
_CLAUSE_TERMINATOR = re.compile(r"([.,;:!?])[\"'”’)\]]*(?:\s+\S*)?$")
_PHONEMES_IPA = 0x02  # espeak_TextToPhonemes phonememode bit 1: IPA as UTF-8
_PARAM_RATE = 1
_PARAM_PITCH = 3
_EE_OK = 0


class _Event(ctypes.Structure):
    """espeak_EVENT."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based, in characters
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclass(frozen=True)
class WordEvent:
    """A word espeak started: `start` is a 0-based character offset into the synthesised text."""

    start: int
    length: int
    sample: int  # first sample of the word, counted from the start of this synth call


# on_audio(pcm int16 at NATIVE_SAMPLE_RATE, word events in it) -> True to abort synthesis
AudioCallback = Callable[[np.ndarray, list[WordEvent]], bool]


class EspeakError(RuntimeError):
    pass


@functools.cache
def _voice_files_by_language() -> dict[str, str]:
    """Language code (lower case) -> voice file name, best priority first, e.g. en-gb -> en."""
    best: dict[str, tuple[int, str]] = {}
    for path in (Path(espeakng_loader.get_data_path()) / "lang").rglob("*"):
        if not path.is_file():
            continue
        best.setdefault(path.name.lower(), (-1, path.name))
        for line in path.read_text(errors="replace").splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[0] == "language":
                priority = int(fields[2]) if len(fields) > 2 else 5
                code = fields[1].lower()
                if code not in best or priority < best[code][0]:
                    best[code] = (priority, path.name)
    return {code: name for code, (_, name) in best.items()}


def resolve_voice(voice: str) -> str:
    """`en-gb+f3` -> the name espeak_SetVoiceByName knows (`en+f3`); unknown parts pass through."""
    language, plus, variant = voice.partition("+")
    if (
        variant
        and not (Path(espeakng_loader.get_data_path()) / "voices" / "!v" / variant).is_file()
    ):
        raise ValueError(f"unknown espeak-ng voice variant {variant!r} in {voice!r}")
    name = _voice_files_by_language().get(language.lower(), language)
    return name + plus + variant


class Espeak:
    """One espeak-ng instance. The library is process-global: create one per process."""

    def __init__(self) -> None:
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_TextToPhonemes.argtypes = [
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.c_int,
            ctypes.c_int,
        ]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        data_path = espeakng_loader.get_data_path().encode()
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, BUFFER_MS, data_path, _INITIALIZE_DONT_EXIT
        )
        if rate != NATIVE_SAMPLE_RATE:
            raise EspeakError(f"espeak_Initialize returned {rate}, expected {NATIVE_SAMPLE_RATE}")
        self._lib = lib
        self._on_audio: AudioCallback | None = None
        self._callback = _SynthCallback(self._dispatch)  # kept referenced: C holds the pointer
        lib.espeak_SetSynthCallback(self._callback)
        self._voice: str | None = None
        self._rate: int | None = None
        self._pitch: int | None = None

    def configure(self, voice: str, rate_wpm: int, pitch: int) -> None:
        """Set voice (e.g. `en-us`, `en-gb`, `en+f3`), rate and pitch; only what changed."""
        if voice != self._voice:
            if self._lib.espeak_SetVoiceByName(resolve_voice(voice).encode()) != _EE_OK:
                raise ValueError(f"unknown espeak-ng voice {voice!r}")
            self._voice, self._rate, self._pitch = voice, None, None  # a voice resets both
        rate_wpm = int(min(max(rate_wpm, MIN_RATE_WPM), MAX_RATE_WPM))
        if rate_wpm != self._rate:
            self._lib.espeak_SetParameter(_PARAM_RATE, rate_wpm, 0)
            self._rate = rate_wpm
        pitch = int(min(max(pitch, 0), 100))
        if pitch != self._pitch:
            self._lib.espeak_SetParameter(_PARAM_PITCH, pitch, 0)
            self._pitch = pitch

    def synth(self, text: str, on_audio: AudioCallback, end_pause: bool = True) -> bool:
        """Speak `text`, calling `on_audio` per buffer as it is produced. False if aborted."""
        data = text.encode()
        flags = _CHARS_UTF8 | (_ENDPAUSE if end_pause else 0)
        self._on_audio, self._aborted = on_audio, False
        try:
            err = self._lib.espeak_Synth(
                data, len(data) + 1, 0, _POS_CHARACTER, 0, flags, None, None
            )
        finally:
            self._on_audio = None
        if err != _EE_OK:
            raise EspeakError(f"espeak_Synth failed with code {err}")
        return not self._aborted

    def phonemes(self, text: str) -> str:
        """IPA for `text` in the current voice, clause by clause joined with spaces."""
        return " ".join(phonemes for phonemes, _ in self.phoneme_clauses(text) if phonemes)

    def phoneme_clauses(self, text: str) -> list[tuple[str, str]]:
        """(IPA, the punctuation that ended it) for each clause espeak finds in `text`.

        espeak_TextToPhonemes drops the punctuation, but neural voices trained on espeak's
        phonemes (Piper) were trained with each clause's terminator kept, so it is read back
        from the text espeak consumed for the clause.
        """
        if not text.strip():
            return []
        data = text.encode()
        buffer = ctypes.create_string_buffer(data)
        base = ctypes.addressof(buffer)
        pointer = ctypes.c_char_p()
        address: int | None = base
        clauses = []
        consumed = 0
        # espeak advances the pointer one clause per call and sets it to NULL after the last.
        # It reads a character ahead, so the pointer may sit at the end of the text while a
        # clause is still held inside espeak: only NULL means done.
        while address is not None:
            _set_address(pointer, address)
            clause = self._lib.espeak_TextToPhonemes(
                ctypes.pointer(pointer), _CHARS_UTF8, _PHONEMES_IPA
            )
            address = _address(pointer)
            end = len(data) if address is None else address - base
            terminator = _CLAUSE_TERMINATOR.search(data[consumed:end].decode(errors="replace"))
            consumed = end
            clauses.append(
                (clause.decode() if clause else "", terminator.group(1) if terminator else "")
            )
        return clauses

    def _dispatch(self, wav, n_samples: int, events) -> int:
        words = []
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            event = events[i]
            if event.type == _EVENT_WORD:
                words.append(WordEvent(event.text_position - 1, event.length, event.sample))
            i += 1
        pcm = np.ctypeslib.as_array(wav, shape=(n_samples,)).copy() if n_samples else _EMPTY
        if self._on_audio is None or (n_samples == 0 and not words):
            return 0
        if self._on_audio(pcm, words):
            self._aborted = True
            return 1
        return 0


def _address(pointer: ctypes.c_char_p) -> int | None:
    return ctypes.cast(ctypes.pointer(pointer), ctypes.POINTER(ctypes.c_void_p))[0]


def _set_address(pointer: ctypes.c_char_p, address: int) -> None:
    ctypes.cast(ctypes.pointer(pointer), ctypes.POINTER(ctypes.c_void_p))[0] = address


_EMPTY = np.zeros(0, dtype=np.int16)
_local_engine: Espeak | None = None
_local_lock = threading.Lock()


def synthesize(
    text: str,
    voice: str = "en-us",
    rate_wpm: int = DEFAULT_RATE_WPM,
    pitch: int = DEFAULT_PITCH,
) -> tuple[np.ndarray, int, list[WordTiming]]:
    """Speak `text` in this process: (int16 pcm at the native rate, that rate, word timings).

    Word character offsets refer to `text`; a word ends where the next begins (or at the end).
    """
    global _local_engine
    buffers: list[np.ndarray] = []
    events: list[WordEvent] = []

    def collect(pcm: np.ndarray, words: list[WordEvent]) -> bool:
        buffers.append(pcm)
        events.extend(words)
        return False

    with _local_lock:
        if _local_engine is None:
            _local_engine = Espeak()
        _local_engine.configure(voice, rate_wpm, pitch)
        _local_engine.synth(text, collect)
    pcm = np.concatenate(buffers) if buffers else _EMPTY.copy()
    return pcm, NATIVE_SAMPLE_RATE, _word_timings(text, events, len(pcm))


def phonemize(text: str, voice: str = "en-us") -> str:
    """IPA phonemes of `text`, clauses joined with spaces (as neural voices read them)."""
    global _local_engine
    with _local_lock:
        if _local_engine is None:
            _local_engine = Espeak()
        _local_engine.configure(voice, DEFAULT_RATE_WPM, DEFAULT_PITCH)
        return _local_engine.phonemes(text)


def phonemize_clauses(text: str, voice: str = "en-us") -> list[tuple[str, str]]:
    """(IPA, terminating punctuation) per clause of `text` (see `Espeak.phoneme_clauses`)."""
    global _local_engine
    with _local_lock:
        if _local_engine is None:
            _local_engine = Espeak()
        _local_engine.configure(voice, DEFAULT_RATE_WPM, DEFAULT_PITCH)
        return _local_engine.phoneme_clauses(text)


def _word_timings(text: str, events: list[WordEvent], n_samples: int) -> list[WordTiming]:
    ms_per_sample = 1000 / NATIVE_SAMPLE_RATE
    timings = []
    for i, event in enumerate(events):
        last = i + 1 == len(events)
        end_sample = n_samples if last else events[i + 1].sample
        # espeak says some word pairs as one ("of the"): the word runs up to the next one
        stretch = text[event.start : len(text) if last else events[i + 1].start]
        word_end = re.search(r"\w(?=\W*$)", stretch)
        end_char = event.start + (word_end.end() if word_end else event.length)
        timings.append(
            WordTiming(
                word=text[event.start : end_char],
                start_char=event.start,
                end_char=end_char,
                start_ms=event.sample * ms_per_sample,
                end_ms=end_sample * ms_per_sample,
            )
        )
    return timings
