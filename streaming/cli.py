"""`step-realtime answer FILE`: answer one audio file offline, printing as it streams.

Reasoning is printed dimmed, the answer plainly; `--speak OUT.wav` also writes the spoken answer.
It runs the same reply pipeline as the server (`streaming.pipeline`), without a socket.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

import numpy as np

from streaming.model import SAMPLE_RATE as MODEL_SAMPLE_RATE
from streaming.responder import (
    REASONING_EFFORTS,
    AnswerDelta,
    ReasoningDelta,
    ResponseFinished,
    ResponseRequest,
    SpeechChunk,
    Turn,
)

ANSI_DIM, ANSI_RESET = "\033[2m", "\033[0m"


def _colours() -> tuple[str, str]:
    """Dim reasoning on a terminal; plain text into pipes and files, or with NO_COLOR set."""
    if sys.stdout.isatty() and not os.environ.get("NO_COLOR"):
        return ANSI_DIM, ANSI_RESET
    return "", ""


def add_answer_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "answer",
        help="answer one audio file offline",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("audio", type=Path, help="the spoken question (WAV, FLAC, ...)")
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="checkpoint directory (default: the embedded model)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument(
        "--engine",
        choices=("torch", "vllm"),
        default="torch",
        help="decoding engine: torch (our loop) or vllm (vLLM, the vllm extra)",
    )
    parser.add_argument("--dtype", default="auto", help="auto, float32, bfloat16, float16")
    parser.add_argument(
        "--effort",
        default=None,
        choices=REASONING_EFFORTS,
        help="reasoning effort (default: medium)",
    )
    parser.add_argument("--max-tokens", type=int, default=1024, help="most tokens to generate")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 is greedy")
    parser.add_argument(
        "--speak",
        type=Path,
        default=None,
        metavar="OUT.wav",
        help="also synthesise the answer into this WAV file",
    )
    parser.add_argument("--voice", default="alloy", help="voice of the spoken answer")
    parser.set_defaults(run=run_answer)


def read_audio(path: Path) -> np.ndarray:
    """Any soundfile format -> mono float32 at 16 kHz."""
    import soundfile
    import soxr

    if not path.is_file():
        raise SystemExit(f"error: no such audio file: {path}")
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as error:
        raise SystemExit(f"error: cannot read {path} as audio: {error}") from None
    mono = data.mean(axis=1)
    if rate != MODEL_SAMPLE_RATE:
        mono = soxr.resample(mono, rate, MODEL_SAMPLE_RATE)
    return mono.astype(np.float32)


def run_answer(args: argparse.Namespace) -> int:
    return asyncio.run(_answer(args))


async def _answer(args: argparse.Namespace) -> int:
    from streaming.pipeline import load_responder

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from streaming.model.config import CheckpointError

    wave = read_audio(args.audio)
    try:
        responder = load_responder(
            args.model, device=args.device, dtype=args.dtype, engine=args.engine
        )
    except (CheckpointError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    dim, reset = _colours()
    request = ResponseRequest(
        turns=[Turn("user", audio=wave)],
        speak=args.speak is not None,
        voice=args.voice,
        max_output_tokens=args.max_tokens,
        temperature=args.temperature,
        reasoning_effort=args.effort,
    )
    audio: list[np.ndarray] = []
    in_reasoning = False
    try:
        async for event in responder.respond(request):
            if isinstance(event, ReasoningDelta):
                in_reasoning = True
                _write(f"{dim}{event.text}{reset}")
            elif isinstance(event, AnswerDelta):
                if in_reasoning:
                    _write("\n\n")
                    in_reasoning = False
                _write(event.text)
            elif isinstance(event, SpeechChunk):
                audio.append(event.chunk.pcm)
            elif isinstance(event, ResponseFinished):
                _write("\n")
                _print_stages(event)
    finally:
        await responder.close()
    if args.speak is not None:
        _save_wav(args.speak, audio)
    return 0


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _print_stages(done: ResponseFinished) -> None:
    stages = ", ".join(
        f"{name} {seconds * 1000:.0f} ms" for name, seconds in done.stage_seconds.items()
    )
    print(
        f"[{done.status}: {done.input_tokens} prompt tokens, {done.reasoning_tokens} "
        f"reasoning, {done.answer_tokens} answer; {stages}]",
        file=sys.stderr,
    )


def _save_wav(path: Path, chunks: list[np.ndarray]) -> None:
    import soundfile

    from tts.base import SAMPLE_RATE

    pcm = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
    soundfile.write(str(path), pcm, SAMPLE_RATE, subtype="PCM_16")
    print(f"wrote {path} ({len(pcm) / SAMPLE_RATE:.2f} s)", file=sys.stderr)
