"""Spoken arithmetic questions, synthesised with espeak-ng: the embedded model's data.

A question is a `Problem` (two operands and an operator) spoken through a phrasing template
("what is {a} times {b}", "multiply {a} by {b}", ...) by one espeak-ng voice (language plus
variant) at some rate and pitch, then shifted in time, scaled in gain and mixed with noise, and
resampled to 16 kHz. Its targets follow Step-Audio-R1's format (see docs/ARCHITECTURE.md, "The
embedded default"):

    reasoning  "I hear: seven times six. 7 * 6 = 42."
    answer     "Seven times six is forty two."

Everything is deterministic from (seed, split, index): item i of a split draws from its own
random generator, so a split is the same whatever the number of worker processes. Some voices
(whole languages and whole variants) and some phrasings are held out of `train` entirely; the
`eval` split uses only those, `dev` uses training voices and phrasings with other seeds.
Training and dev questions may also open or close with a filler ("hey", "thanks"): words the
model must learn to pass over, as it has to with the held-out carriers' unknown words.

Besides questions (kind `question`), a split has clips the model must decline with `REJECTION`
(`make_item`): off-task sentences (`offtask`, from `streaming.arith.offtask`), questions cut off
before their last operand (`truncated`), a 0.1-0.4 s snippet of speech (`fragment`), silence-like
clips (`silence`) and noise (`noise`). Each kind has its own random stream, so adding kinds
never changes the questions.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np
import soxr

from streaming.arith import offtask
from streaming.model.frontend import SAMPLE_RATE

# Operand ranges (inclusive): + and - up to 20, x and / up to 12 (exact division only).
ADD_SUB_MAX = 20
MUL_DIV_MAX = 12
RATE_WPM = (120, 240)
PITCH = (25, 75)
GAIN_DB = (-18.0, 4.0)  # relative to espeak's level, which peaks near full scale
SNR_DB = (8.0, 40.0)
NOISE_PROBABILITY = 0.75
LEAD_SILENCE_S = (0.0, 0.35)
# The server hands the model its turn with the whole silence window after the speech (500 ms
# by default), and a speculative start with about 60 ms of it: trailing silence spans both.
TRAIL_SILENCE_S = (0.0, 0.7)
SPLIT_SEEDS = {"train": 1, "dev": 2, "eval": 3}

OPERATORS = ("+", "-", "*", "/")
OPERATOR_WORDS = {"+": "plus", "-": "minus", "*": "times", "/": "divided by"}

# The one reply to anything that is not a whole arithmetic question (off-task speech, silence,
# noise, a question cut short): fixed, so that tests and benchmarks can recognise it.
REJECTION = "Sorry, I only do arithmetic; try: what is seven times six."
REJECTION_REASONING = "I hear no arithmetic question."

QUESTION = "question"
DECLINED_KINDS = ("offtask", "truncated", "fragment", "silence", "noise")
KINDS = (QUESTION, *DECLINED_KINDS)
_KIND_STREAMS = {kind: 100 + i for i, kind in enumerate(KINDS)}  # random stream per kind
CLIP_S = (0.3, 3.0)  # silence and noise clips, before the usual leading/trailing silence
FRAGMENT_S = (0.1, 0.4)
SILENCE_DBFS = (-75.0, -45.0)  # a quiet room or line noise
NOISE_DBFS = (-35.0, -6.0)
MIN_CUT_S = 0.1  # a truncated question keeps at least this much of its speech

# Voices: an espeak-ng language and a variant. A voice is held out when its language or its
# variant is; training voices use neither.
TRAIN_LANGUAGES = ("en-us", "en-gb", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-gb-x-gbcwmd")
HELD_OUT_LANGUAGES = ("en-us-nyc", "en-gb-x-gbclan")
TRAIN_VARIANTS = (
    "",
    "m1",
    "m2",
    "m3",
    "m4",
    "m6",
    "m7",
    "f1",
    "f2",
    "f4",
    "f5",
    "klatt",
    "klatt3",
    "Andy",
    "Annie",
    "david",
    "linda",
    "max",
    "steph",
    "travis",
)
HELD_OUT_VARIANTS = ("m5", "f3", "klatt2", "john", "belinda")

# Phrasings. Noun forms go into carriers ("what is {e}"); verb forms into verb carriers.
NOUN_FORMS = {
    "+": ("{a} plus {b}", "the sum of {a} and {b}"),
    "-": ("{a} minus {b}", "{a} take away {b}"),
    "*": ("{a} times {b}", "{a} multiplied by {b}", "the product of {a} and {b}"),
    "/": ("{a} divided by {b}",),
}
VERB_FORMS = {
    "+": ("add {a} and {b}",),
    "-": ("subtract {b} from {a}",),
    "*": ("multiply {a} by {b}",),
    "/": ("divide {a} by {b}",),
}
TRAIN_NOUN_CARRIERS = (
    "what is {e}",
    "what's {e}",
    "{e}",
    "calculate {e}",
    "tell me {e}",
    "what is {e} equal to",
    "what would be {e}",
    "compute {e}",
    "find {e}",
    "give me {e}",
    "solve {e}",
    "do you know {e}",
    "what does {e} make",
    "what's the result of {e}",
    "I need {e}",
)
HELD_OUT_NOUN_CARRIERS = ("how much is {e}", "can you work out {e}")
TRAIN_VERB_CARRIERS = (
    "{v}",
    "please {v}",
    "what do you get if you {v}",
    "could you {v}",
    "would you {v}",
    "now {v}",
    "help me {v}",
    "what happens if you {v}",
    "tell me what you get if you {v}",
)
HELD_OUT_VERB_CARRIERS = ("what do you get when you {v}",)

# Words before and after a training question, so that the model learns to pass over words it
# has no use for (the held-out phrasings bring unknown ones). None sounds like a number
# ("to", "for", "one"), and none is a word of a held-out carrier (see `held_out_words`).
TRAIN_PREFIXES = (
    "hey",
    "okay",
    "so",
    "um",
    "well",
    "hello",
    "hi",
    "excuse me",
    "quick question",
    "I wonder",
    "let me ask you",
    "right",
    "alright",
    "listen",
    "next question",
    "hmm",
    "oh",
    "let's see",
    "good morning",
    "I have a question",
    "please tell me",
    "hey there",
    "okay so",
    "right then",
)
TRAIN_SUFFIXES = (
    "please",
    "thanks",
    "thank you",
    "exactly",
    "in your head",
    "okay",
    "again",
    "if you know",
    "right now",
    "quickly",
    "I wonder",
)
PREFIX_PROBABILITY = 0.4
SUFFIX_PROBABILITY = 0.25
# Words of the off-task sentences (names, places, things; no number words) around a training
# question (`_with_other_words`).
OTHER_WORDS = tuple(
    word
    for slot in ("name", "city", "animal", "food", "item", "place", "thing", "language")
    for value in offtask.SLOTS[slot]
    for word in value.split()
)
OTHER_PREFIX_PROBABILITY = 0.12
OTHER_SUFFIX_PROBABILITY = 0.08

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> str:
    """0 <= n < 1000 in words, as the answers write them: 144 -> "one hundred forty four"."""
    if not 0 <= n < 1000:
        raise ValueError(f"number_words covers 0..999, got {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    rest = n % 100
    return f"{_ONES[n // 100]} hundred" + ("" if rest == 0 else " " + number_words(rest))


_WORD_VALUES = {w: i for i, w in enumerate(_ONES)} | {
    w: 10 * i for i, w in enumerate(_TENS) if i >= 2
}


def parse_number_words(text: str) -> int | None:
    """The inverse of `number_words` for a run of number words; None if it is not one."""
    total, current = 0, 0
    words = text.split()
    if not words:
        return None
    for word in words:
        if word == "hundred" and 0 < current < 10:
            current *= 100
        elif word in _WORD_VALUES:
            current += _WORD_VALUES[word]
        else:
            return None
    return total + current


_ANSWER = re.compile(r"\bis ([a-z ]+?)\s*[.!?]?\s*$")


def answer_number(answer: str) -> int | None:
    """The number an answer sentence states ("Seven times six is forty two." -> 42)."""
    match = _ANSWER.search(answer.strip().lower())
    return parse_number_words(match.group(1)) if match else None


@dataclass(frozen=True)
class Problem:
    a: int
    op: str
    b: int

    @property
    def result(self) -> int:
        a, b = self.a, self.b
        return {"+": a + b, "-": a - b, "*": a * b, "/": a // b if b else 0}[self.op]

    @property
    def heard(self) -> str:
        """The question in canonical words: "seven times six"."""
        return f"{number_words(self.a)} {OPERATOR_WORDS[self.op]} {number_words(self.b)}"

    @property
    def reasoning(self) -> str:
        return f"I hear: {self.heard}. {self.a} {self.op} {self.b} = {self.result}."

    @property
    def answer(self) -> str:
        return self.answer_with(self.result)

    def answer_with(self, value: int) -> str:
        """The answer sentence stating `value` (a tool's result, which may not be the true one)."""
        sentence = f"{self.heard} is {number_words(value)}."
        return sentence[0].upper() + sentence[1:]


@functools.cache
def all_problems() -> tuple[Problem, ...]:
    """Every question the task asks: results are whole and not negative."""
    adds = [Problem(a, "+", b) for a in range(ADD_SUB_MAX + 1) for b in range(ADD_SUB_MAX + 1)]
    subs = [Problem(a, "-", b) for a in range(ADD_SUB_MAX + 1) for b in range(a + 1)]
    muls = [Problem(a, "*", b) for a in range(MUL_DIV_MAX + 1) for b in range(MUL_DIV_MAX + 1)]
    divs = [
        Problem(b * q, "/", b) for b in range(1, MUL_DIV_MAX + 1) for q in range(MUL_DIV_MAX + 1)
    ]
    return tuple(adds + subs + muls + divs)


@functools.cache
def problems_of(op: str) -> tuple[Problem, ...]:
    return tuple(p for p in all_problems() if p.op == op)


def phrasings(op: str, held_out: bool) -> list[str]:
    """Templates with {a} and {b} for one operator: the training ones, or the held-out ones."""
    nouns = HELD_OUT_NOUN_CARRIERS if held_out else TRAIN_NOUN_CARRIERS
    verbs = HELD_OUT_VERB_CARRIERS if held_out else TRAIN_VERB_CARRIERS
    return [c.format(e=e) for c in nouns for e in NOUN_FORMS[op]] + [
        c.format(v=v) for c in verbs for v in VERB_FORMS[op]
    ]


def train_voices() -> list[str]:
    return [_voice(lang, var) for lang in TRAIN_LANGUAGES for var in TRAIN_VARIANTS]


def held_out_voices() -> list[str]:
    """Voices with a held-out language or a held-out variant (or both)."""
    variants = TRAIN_VARIANTS + HELD_OUT_VARIANTS
    return [_voice(lang, var) for lang in HELD_OUT_LANGUAGES for var in variants] + [
        _voice(lang, var) for lang in TRAIN_LANGUAGES for var in HELD_OUT_VARIANTS
    ]


def _voice(language: str, variant: str) -> str:
    return f"{language}+{variant}" if variant else language


@dataclass(frozen=True)
class Utterance:
    """One clip: what was said, how, and the targets. A `question` has its `problem`; the
    declined kinds have none (a `truncated` one keeps the problem it was cut from)."""

    split: str
    index: int
    problem: Problem | None
    text: str  # what the voice says ("" for silence and noise)
    voice: str
    rate_wpm: int
    pitch: int
    held_out_voice: bool
    held_out_phrasing: bool
    kind: str = QUESTION
    # truncated: where the cut falls between its bounds; fragment: where the snippet starts;
    # silence and noise: the level within its range (all in [0, 1))
    position: float = 0.0
    duration_s: float = 0.0  # fragment, silence and noise: how long the clip is

    @property
    def declined(self) -> bool:
        return self.kind != QUESTION

    @property
    def question(self) -> Problem:
        """The problem of a question (an error for a clip that asks none)."""
        if self.problem is None or self.declined:
            raise ValueError(f"a {self.kind} clip asks no question")
        return self.problem

    @property
    def reasoning(self) -> str:
        return REJECTION_REASONING if self.declined else self.question.reasoning

    @property
    def answer(self) -> str:
        return REJECTION if self.declined else self.question.answer

    @property
    def transcript(self) -> str | None:
        """The words heard, in the normaliser's forms (lower case, numbers as words, fillers
        kept, no punctuation; apostrophes stay inside words): the transcription target.
        None for clips whose words are cut (truncated, fragment)."""
        if self.kind in ("truncated", "fragment"):
            return None
        return self.text.lower()


def make_utterance(split: str, index: int, seed: int = 0) -> Utterance:
    """Item `index` of `split` (train, dev, eval): problem, phrasing, voice, rate and pitch.

    `eval` mixes three kinds in turn: held-out voice with a training phrasing, training voice
    with a held-out phrasing, and both held out.
    """
    rng = item_rng(split, index, seed)
    op = OPERATORS[rng.integers(len(OPERATORS))]
    problems = problems_of(op)
    problem = problems[rng.integers(len(problems))]
    kind = index % 3 if split == "eval" else -1
    held_voice, held_phrasing = kind in (0, 2), kind in (1, 2)
    voices = held_out_voices() if held_voice else train_voices()
    templates = phrasings(problem.op, held_phrasing)
    text = templates[rng.integers(len(templates))].format(
        a=number_words(problem.a), b=number_words(problem.b)
    )
    voice = voices[rng.integers(len(voices))]
    rate_wpm = int(rng.integers(RATE_WPM[0], RATE_WPM[1] + 1))
    pitch = int(rng.integers(PITCH[0], PITCH[1] + 1))
    if split != "eval":  # held-out questions are scored as they were before fillers existed
        text = _with_other_words(_with_fillers(text, rng), rng)
    return Utterance(
        split=split,
        index=index,
        problem=problem,
        text=text,
        voice=voice,
        rate_wpm=rate_wpm,
        pitch=pitch,
        held_out_voice=held_voice,
        held_out_phrasing=held_phrasing,
    )


def make_item(split: str, kind: str, index: int, seed: int = 0) -> Utterance:
    """Item `index` of one kind of `split`: a question (`make_utterance`) or a clip to decline.

    `eval` uses held-out voices, held-out off-task sentences and held-out phrasings only.
    """
    if kind == QUESTION:
        return make_utterance(split, index, seed)
    if kind not in DECLINED_KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")
    rng = np.random.default_rng([seed, SPLIT_SEEDS[split], _KIND_STREAMS[kind], index])
    held = split == "eval"
    voices = held_out_voices() if held else train_voices()
    problem, text = None, ""
    if kind in ("offtask", "fragment") and (kind == "offtask" or rng.random() < 0.5):
        text = offtask.sentence(held, rng)
    elif kind in ("truncated", "fragment"):
        op = OPERATORS[rng.integers(len(OPERATORS))]
        problem = problems_of(op)[rng.integers(len(problems_of(op)))]
        templates = phrasings(problem.op, held_out=held and rng.random() < 0.5)
        text = templates[rng.integers(len(templates))].format(
            a=number_words(problem.a), b=number_words(problem.b)
        )
    if text and not held:
        text = _with_fillers(text, rng) if kind != "truncated" else _with_prefix(text, rng)
    durations = FRAGMENT_S if kind == "fragment" else CLIP_S
    return Utterance(
        split=split,
        index=index,
        problem=problem,
        text=text,
        voice=voices[rng.integers(len(voices))] if text else "",
        rate_wpm=int(rng.integers(RATE_WPM[0], RATE_WPM[1] + 1)),
        pitch=int(rng.integers(PITCH[0], PITCH[1] + 1)),
        held_out_voice=held,
        held_out_phrasing=held,
        kind=kind,
        position=float(rng.random()),
        duration_s=float(rng.uniform(*durations)),
    )


def _with_prefix(text: str, rng: np.random.Generator) -> str:
    if rng.random() < PREFIX_PROBABILITY:
        text = f"{TRAIN_PREFIXES[rng.integers(len(TRAIN_PREFIXES))]} {text}"
    return text


def _with_fillers(text: str, rng: np.random.Generator) -> str:
    if rng.random() < PREFIX_PROBABILITY:
        text = f"{TRAIN_PREFIXES[rng.integers(len(TRAIN_PREFIXES))]} {text}"
    if rng.random() < SUFFIX_PROBABILITY:
        text = f"{text} {TRAIN_SUFFIXES[rng.integers(len(TRAIN_SUFFIXES))]}"
    return text


def _with_other_words(text: str, rng: np.random.Generator) -> str:
    """Sometimes a word or two of other speech (a name, a place, a thing) before or after the
    question: words the model also hears in sentences it declines, so that what decides is
    whether a whole question is there, never whether every word is known."""
    for probability, before in (
        (OTHER_PREFIX_PROBABILITY, True),
        (OTHER_SUFFIX_PROBABILITY, False),
    ):
        if rng.random() < probability:
            words = " ".join(
                OTHER_WORDS[rng.integers(len(OTHER_WORDS))] for _ in range(rng.integers(1, 3))
            )
            text = f"{words} {text}" if before else f"{text} {words}"
    return text


def held_out_words() -> set[str]:
    """Words that only the held-out carriers use: no training text may contain one."""

    def words(carriers: tuple[str, ...]) -> set[str]:
        return {w for c in carriers for w in c.split() if "{" not in w}

    train = words(TRAIN_NOUN_CARRIERS + TRAIN_VERB_CARRIERS)
    return words(HELD_OUT_NOUN_CARRIERS + HELD_OUT_VERB_CARRIERS) - train


def item_rng(split: str, index: int, seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, SPLIT_SEEDS[split], index])


PARTIAL = "<partial>"  # a word cut by the end of a clip: speech, but no word of the vocabulary


@dataclass(frozen=True)
class SpokenWord:
    """A word of a clip and when it is spoken (seconds from the clip's start)."""

    word: str
    start_s: float
    end_s: float


def speak(utterance: Utterance, seed: int = 0, augment: bool = True) -> np.ndarray:
    """The utterance as 16 kHz float32 audio, with silence, gain and noise drawn from its seed."""
    return speak_words(utterance, seed, augment)[0]


def speak_words(
    utterance: Utterance, seed: int = 0, augment: bool = True
) -> tuple[np.ndarray, list[SpokenWord]]:
    """`speak`, and the clip's words with their times (espeak-ng's word events).

    espeak-ng's output also depends on what the process synthesised before (a few samples
    differ): `melcache` makes each chunk of items in a fresh process, in order.
    """
    words: list[SpokenWord] = []
    if utterance.kind in ("silence", "noise"):
        wave = _non_speech(utterance, seed)
    else:
        wave, words = _spoken(utterance)
    if utterance.kind == "truncated":
        wave, words = _cut_before_last_operand(wave, words, utterance.position)
    elif utterance.kind == "fragment":
        wave, words = _snippet(wave, words, utterance.position, utterance.duration_s)
    lead = 0
    if augment:
        wave, lead = augment_wave(wave, np.random.default_rng([*_streams(utterance, seed), 1]))
    offset = lead / SAMPLE_RATE
    words = [SpokenWord(w.word, w.start_s + offset, w.end_s + offset) for w in words]
    return wave.astype(np.float32), words


def _spoken(utterance: Utterance) -> tuple[np.ndarray, list[SpokenWord]]:
    from tts.espeak import synthesize  # espeak-ng is loaded only where audio is made

    pcm, rate, timings = synthesize(
        utterance.text, utterance.voice, utterance.rate_wpm, utterance.pitch
    )
    wave = soxr.resample(pcm.astype(np.float32) / 32768.0, rate, SAMPLE_RATE)
    words = [SpokenWord(t.word.lower(), t.start_ms / 1000, t.end_ms / 1000) for t in timings]
    return wave, words


def _cut_before_last_operand(
    wave: np.ndarray, words: list[SpokenWord], position: float
) -> tuple[np.ndarray, list[SpokenWord]]:
    """The question up to a point before its last number word begins: it cannot be answered.
    A word the cut runs through is kept as a partial word (`PARTIAL`)."""
    numbers = [i for i, w in enumerate(words) if parse_number_words(w.word) is not None]
    last = words[numbers[-1]].start_s if numbers else words[-1].end_s
    start = words[0].start_s if words else 0.0
    cut = start + MIN_CUT_S + position * max(0.0, last - start - MIN_CUT_S)
    kept = [
        w if w.end_s <= cut else SpokenWord(PARTIAL, w.start_s, cut)
        for w in words
        if w.start_s < cut
    ]
    return wave[: int(cut * SAMPLE_RATE)], kept


def _snippet(
    wave: np.ndarray, words: list[SpokenWord], position: float, duration_s: float
) -> tuple[np.ndarray, list[SpokenWord]]:
    """`duration_s` of the speech, from a point within it; every word in it is partial."""
    start = words[0].start_s if words else 0.0
    end = words[-1].end_s if words else len(wave) / SAMPLE_RATE
    begin = start + position * max(0.0, end - start - duration_s)
    stop = begin + duration_s
    kept = [
        SpokenWord(PARTIAL, max(w.start_s, begin) - begin, min(w.end_s, stop) - begin)
        for w in words
        if w.start_s < stop and w.end_s > begin
    ]
    return wave[int(begin * SAMPLE_RATE) : int(stop * SAMPLE_RATE)], kept


def _streams(utterance: Utterance, seed: int) -> list[int]:
    """The random streams of one clip's audio (the questions' as they always were)."""
    split = SPLIT_SEEDS[utterance.split]
    if utterance.kind == QUESTION:
        return [seed, split, utterance.index]
    return [seed, split, _KIND_STREAMS[utterance.kind], utterance.index]


def _non_speech(utterance: Utterance, seed: int) -> np.ndarray:
    """A silence-like clip (a quiet room, or digital silence) or noise (white, pink, brown or
    mains hum), of `duration_s`, at a level drawn from `position`."""
    rng = np.random.default_rng([*_streams(utterance, seed), 7])
    n = int(utterance.duration_s * SAMPLE_RATE)
    if utterance.kind == "silence" and rng.random() < 0.25:
        return np.zeros(n, dtype=np.float32)
    colour = int(rng.integers(4)) if utterance.kind == "noise" else int(rng.integers(2))
    if colour == 0:
        noise = rng.standard_normal(n)
    elif colour == 1:
        noise = _pink_noise(n, rng)
    elif colour == 2:
        noise = np.cumsum(rng.standard_normal(n))  # brown: integrated white noise
        noise -= np.convolve(noise, np.ones(801) / 801, mode="same")  # no drift
    else:
        t = np.arange(n) / SAMPLE_RATE
        mains = 50.0 if rng.random() < 0.5 else 60.0
        noise = np.zeros(n)
        for harmonic in (1, 2, 3, 5):
            noise = noise + np.sin(2 * np.pi * mains * harmonic * t) / harmonic
        noise = noise + 0.1 * rng.standard_normal(n)
    low, high = SILENCE_DBFS if utterance.kind == "silence" else NOISE_DBFS
    level = 10 ** ((low + utterance.position * (high - low)) / 20)
    noise = np.asarray(noise, dtype=np.float64)
    noise *= level / (np.sqrt(np.mean(noise**2)) + 1e-12)
    return np.clip(noise, -1.0, 1.0).astype(np.float32)


def augment_wave(wave: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Random leading/trailing silence, gain, and white or pink noise at a random SNR.

    Returns the new wave and the number of silent samples put in front.
    """
    pad = (
        np.array([rng.uniform(*LEAD_SILENCE_S), rng.uniform(*TRAIL_SILENCE_S)]) * SAMPLE_RATE
    ).astype(int)
    wave = np.pad(wave, (pad[0], pad[1])) * 10 ** (rng.uniform(*GAIN_DB) / 20)
    if rng.random() < NOISE_PROBABILITY:
        noise = (
            _pink_noise(len(wave), rng) if rng.random() < 0.5 else rng.standard_normal(len(wave))
        )
        speech_power = np.mean(wave**2) + 1e-12
        snr = 10 ** (rng.uniform(*SNR_DB) / 10)
        wave = wave + noise * np.sqrt(speech_power / snr / (np.mean(noise**2) + 1e-12))
    return np.clip(wave, -1.0, 1.0).astype(np.float32), int(pad[0])


def _pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f noise: white noise shaped in the frequency domain."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
    return np.fft.irfft(spectrum, n)
