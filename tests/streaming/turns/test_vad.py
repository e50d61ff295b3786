"""The speech classifiers behind turn detection, on espeak-ng speech and real models."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from streaming.turns.vad import (
    VAD_KINDS,
    SileroClassifier,
    SpeechClassifier,
    WebrtcClassifier,
    make_classifier,
    silero_model_path,
)
from tests.support.speech import spoken

RATE = 16_000
LEAD_MS = 600
TAIL_MS = 600


def padded_speech(text: str = "what is seven times six", voice: str = "en-us") -> np.ndarray:
    """16 kHz int16 speech with LEAD_MS of digital silence before and TAIL_MS after."""
    return spoken(text, RATE, LEAD_MS, TAIL_MS, voice)


def frames(classifier: SpeechClassifier, pcm: np.ndarray) -> list[np.ndarray]:
    n = classifier.frame_samples
    return [pcm[i : i + n] for i in range(0, len(pcm) - n + 1, n)]


def probabilities(classifier: SpeechClassifier, pcm: np.ndarray) -> np.ndarray:
    return np.array([classifier.probability(f) for f in frames(classifier, pcm)])


@pytest.mark.parametrize(("kind", "samples", "ms"), [("webrtc", 480, 30.0), ("silero", 512, 32.0)])
def test_make_classifier_by_name(kind: str, samples: int, ms: float) -> None:
    classifier = make_classifier(kind, 0.5)
    assert kind in VAD_KINDS
    assert classifier.frame_samples == samples
    assert classifier.frame_ms == ms
    assert 0 < classifier.onset_needed <= classifier.onset_window


def test_bad_kind_and_threshold_are_refused_with_what_to_use() -> None:
    with pytest.raises(ValueError, match="webrtc, silero"):
        make_classifier("energy", 0.5)
    for kind in VAD_KINDS:
        with pytest.raises(ValueError, match="between 0.0 and 1.0"):
            make_classifier(kind, 1.5)


def test_webrtc_keeps_the_servers_threshold_mapping() -> None:
    thresholds = (0.0, 0.25, 0.5, 0.7, 0.75, 1.0)
    classifiers = [WebrtcClassifier(t) for t in thresholds]
    assert [c.aggressiveness for c in classifiers] == [0, 1, 2, 2, 3, 3]
    # ceil((0.3 + 0.6 t) * 10) of the last 10 frames
    assert [c.onset_needed for c in classifiers] == [3, 5, 6, 8, 8, 9]
    assert all(c.onset_window == 10 for c in classifiers)


@pytest.mark.parametrize("kind", VAD_KINDS)
def test_speech_is_speech_and_silence_is_not(kind: str) -> None:
    classifier = make_classifier(kind, 0.5)
    pcm = padded_speech()
    verdicts = np.array([classifier.is_speech(f) for f in frames(classifier, pcm)])
    lead = int(LEAD_MS / classifier.frame_ms) - 1
    tail = int(TAIL_MS / classifier.frame_ms) - 2  # the model's state fades out over a frame
    assert not verdicts[:lead].any()
    assert not verdicts[-tail:].any()
    assert verdicts[lead:-tail].mean() > 0.7


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # silero_vad's resource lookup
def test_silero_is_silero_vads_own_onnx_wrapper() -> None:
    """Same frames, same probabilities as the package's reference code (which uses torch)."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    try:
        from silero_vad import load_silero_vad

        reference = load_silero_vad(onnx=True)
        ours = SileroClassifier(0.5)
        pcm = padded_speech("multiply six by four", voice="en-gb")
        for frame in frames(ours, pcm):
            expected = reference(torch.from_numpy(frame.astype(np.float32) / 32768.0), RATE)
            assert ours.probability(frame) == pytest.approx(float(expected.item()), abs=1e-5)
    finally:
        torch.set_num_threads(threads)  # silero_vad's import sets it to 1 for the process


def test_silero_threshold_is_the_probability_cut() -> None:
    pcm = padded_speech()
    low, high = SileroClassifier(0.3), SileroClassifier(0.7)
    reference = probabilities(SileroClassifier(0.5), pcm)
    for frame, p in zip(frames(low, pcm), reference, strict=True):
        assert low.is_speech(frame) == (p >= 0.3)
        assert high.is_speech(frame) == (p >= 0.7)


@pytest.mark.parametrize("kind", VAD_KINDS)
def test_reset_forgets_recurrent_state(kind: str) -> None:
    pcm = padded_speech()
    fresh = probabilities(make_classifier(kind, 0.5), pcm)
    classifier = make_classifier(kind, 0.5)
    probabilities(classifier, pcm)
    classifier.reset()
    np.testing.assert_allclose(probabilities(classifier, pcm), fresh, atol=1e-6)


def test_silero_carries_state_from_frame_to_frame() -> None:
    """After a whole utterance, a speech frame is judged otherwise than by a fresh classifier:
    the recurrent state is real (so `reset` has something to forget)."""
    pcm = padded_speech()
    warm = SileroClassifier(0.5)
    clip = frames(warm, pcm)
    for frame in clip:
        warm.probability(frame)
    onset = clip[int(LEAD_MS / warm.frame_ms) + 1]
    assert abs(warm.probability(onset) - SileroClassifier(0.5).probability(onset)) > 0.1


def test_silero_sessions_do_not_share_state() -> None:
    """Two classifiers fed in turns (one shared onnxruntime session) match each run alone."""
    a_pcm, b_pcm = (
        padded_speech("what is seven times six"),
        padded_speech("twelve plus nine", "en-gb"),
    )
    a_alone = probabilities(SileroClassifier(0.5), a_pcm)
    b_alone = probabilities(SileroClassifier(0.5), b_pcm)
    a, b = SileroClassifier(0.5), SileroClassifier(0.5)
    a_frames, b_frames = frames(a, a_pcm), frames(b, b_pcm)
    n = min(len(a_frames), len(b_frames))
    a_mixed, b_mixed = [], []
    for i in range(n):
        a_mixed.append(a.probability(a_frames[i]))
        b_mixed.append(b.probability(b_frames[i]))
    np.testing.assert_allclose(a_mixed, a_alone[:n], atol=1e-6)
    np.testing.assert_allclose(b_mixed, b_alone[:n], atol=1e-6)


@pytest.mark.parametrize("kind", VAD_KINDS)
def test_wrong_frames_are_refused_with_the_expected_shape(kind: str) -> None:
    classifier = make_classifier(kind, 0.5)
    n = classifier.frame_samples
    with pytest.raises(ValueError, match=f"{n} int16 samples"):
        classifier.probability(np.zeros(n - 1, np.int16))
    with pytest.raises(ValueError, match=f"{n} int16 samples"):
        classifier.probability(np.zeros(n, np.float32))


def test_silero_model_comes_from_the_wheel_without_importing_torch() -> None:
    path = silero_model_path()
    assert path.is_file() and path.name == "silero_vad.onnx"
    assert "silero_vad" in path.parts
    code = (
        "import sys, numpy as np\n"
        "from streaming.turns.vad import make_classifier\n"
        "c = make_classifier('silero', 0.5)\n"
        "c.probability(np.zeros(c.frame_samples, np.int16))\n"
        "print(sorted(m for m in ('torch', 'silero_vad') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
