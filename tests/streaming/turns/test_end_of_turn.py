"""Smart Turn v3.2 from the installed pipecat-ai wheel, on espeak-ng speech."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import soxr

from streaming.turns.end_of_turn import EndOfTurnModel, smart_turn_model_path
from tts.espeak import synthesize

RATE = 16_000
LEAD_S = 0.5  # pipecat hands the model the turn from 0.5 s before the speech
TAIL_S = 0.2  # and the silence its VAD waited for


@pytest.fixture(scope="module")
def model() -> EndOfTurnModel:
    return EndOfTurnModel()


def question(text: str, voice: str = "en-us", cut_before_word: int | None = None) -> np.ndarray:
    """16 kHz float32 speech of `text`, optionally cut where word `cut_before_word` starts."""
    pcm, native_rate, words = synthesize(text, voice)
    speech = soxr.resample(pcm.astype(np.float32) / 32768.0, native_rate, RATE)
    if cut_before_word is not None:
        speech = speech[: int(words[cut_before_word].start_ms * RATE / 1000)]
    lead, tail = np.zeros(int(LEAD_S * RATE), np.float32), np.zeros(int(TAIL_S * RATE), np.float32)
    return np.concatenate([lead, speech, tail])


def pipecat_features_module() -> ModuleType:
    """pipecat's own numpy copy of Whisper's features, loaded from the installed file alone
    (importing it through the package would need pipecat's dependencies)."""
    path = smart_turn_model_path().parents[1] / "_whisper_features.py"
    spec = importlib.util.spec_from_file_location("pipecat_whisper_features", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_model_file_is_the_wheels_and_pipecat_is_not_imported() -> None:
    path = smart_turn_model_path()
    assert path.name == "smart-turn-v3.2-cpu.onnx" and path.is_file()
    assert "pipecat" in path.parts
    code = (
        "import sys, numpy as np\n"
        "from streaming.turns.end_of_turn import EndOfTurnModel\n"
        "EndOfTurnModel().probability(np.zeros(16000, np.float32))\n"
        "print(sorted(m for m in ('pipecat', 'loguru') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_features_match_pipecats_own(model: EndOfTurnModel) -> None:
    reference = pipecat_features_module()
    for audio in (question("what is seven times six"), np.zeros(RATE, np.float32)):
        ours = model.features(audio)
        assert ours.shape == (1, 80, 800) and ours.dtype == np.float32
        theirs = reference.compute_whisper_log_mel_features(model.last_window(audio))
        np.testing.assert_allclose(ours[0], theirs, atol=1e-4)


def test_window_keeps_the_end_and_pads_the_front(model: EndOfTurnModel) -> None:
    n = int(EndOfTurnModel.MAX_SECONDS * RATE)
    short = np.full(RATE, 0.5, np.float32)
    window = model.last_window(short)
    assert len(window) == n
    assert not window[: n - RATE].any() and (window[n - RATE :] == 0.5).all()
    long = np.arange(n + RATE, dtype=np.float32) / (n + RATE)
    np.testing.assert_array_equal(model.last_window(long), long[RATE:])


def test_int16_is_read_as_full_scale_float(model: EndOfTurnModel) -> None:
    as_int16 = np.round(question("multiply six by four", "en-gb") * 32767).astype(np.int16)
    p_int = model.probability(as_int16)
    assert 0.0 <= p_int <= 1.0
    assert p_int == pytest.approx(model.probability(as_int16 / 32768.0), abs=1e-4)


@pytest.mark.parametrize("voice", ["en-us", "en-gb"])
def test_a_question_cut_before_its_last_number_is_not_complete(
    model: EndOfTurnModel, voice: str
) -> None:
    """The clearest case on espeak-ng speech ("what is seven times" ...). Cuts elsewhere are
    often judged complete: benchmarks/turns.py measures how often."""
    text = "What is seven times six?"
    complete = model.probability(question(text, voice))
    cut = model.probability(question(text, voice, cut_before_word=4))
    assert complete > 0.5 > cut


def test_bad_input_says_what_to_pass(model: EndOfTurnModel, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="1-D mono"):
        model.probability(np.zeros((2, RATE), np.float32))
    with pytest.raises(ValueError, match="int16 or float"):
        model.probability(np.zeros(RATE, np.int32))
    with pytest.raises(ValueError, match="threads"):
        EndOfTurnModel(threads=0)
    with pytest.raises(FileNotFoundError, match="no Smart Turn model"):
        EndOfTurnModel(tmp_path / "missing.onnx")
