"""The Kokoro backend without its weights: clear errors, and the timing spread it uses.

The model itself is not tested here: no weights are available (see tts/kokoro_backend.py).
"""

import importlib.util
from pathlib import Path

import pytest

from tts import get_backend
from tts.kokoro_backend import KokoroUnavailable, _spread
from tts.normalize import normalize


def test_missing_runtime_or_model_is_a_clear_error(tmp_path: Path) -> None:
    expected = "model.onnx" if importlib.util.find_spec("onnxruntime") else "onnxruntime"
    with pytest.raises(KokoroUnavailable, match=expected):
        get_backend("kokoro", model_dir=tmp_path)


def test_spread_gives_contiguous_timings_per_original_word() -> None:
    text = "Pay $5 now."
    spoken = normalize(text)  # Pay five dollars now.
    timings = _spread(spoken, text, ["peɪ", "faɪv", "dɑlɚz", "naʊ"], 1000.0, 900.0)
    assert [t.word for t in timings] == ["Pay", "$5", "now"]
    assert timings[0].start_ms == 1000.0 and timings[-1].end_ms == pytest.approx(1900.0)
    assert all(a.end_ms == b.start_ms for a, b in zip(timings, timings[1:], strict=False))
