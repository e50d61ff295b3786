"""The remote engine against the in-process vLLM engine, on one checkpoint and the same prompts.

First `python -m streaming.engine.serve_vllm` on a free port of 127.0.0.1 (its start: process
start to `/health` answering 200) and `RemoteEngine` on it; then, the server stopped (one vLLM at
a time), `VllmEngine` in this process (its start: construction to the end of `warm_up`). Both in
fp32 on CPU, the same sizes (sequences, context, KV cache). Per engine and prompt shape, medians
of `--runs` runs, each on a new prompt (nothing of it cached):

- first token: from the `submit` call to the first token in the caller's hands;
- per token: from the first token to the last, over `--tokens` tokens, divided.

One untimed request of each shape goes first (a new shape may cost vLLM a compilation).

The shapes: `short` (20 text tokens) and `question` (a 30 s question, 375 audio rows in two
spans of 25 s and 5 s, after 1000 text tokens of history). Request bytes: the JSON body of one
`/inference/v1/generate` request for the `question` shape at the checkpoint's width and at
Step-Audio-R1's (hidden 5120, rows in bfloat16 and float32), against `/v1/completions` with
`prompt_embeds` of the whole prompt (a row per position, base64; computed).

    python -m benchmarks.remote_engine                 # the embedded default model
    python -m benchmarks.remote_engine --quick         # 2 runs, 8 tokens

Prints a table and writes benchmarks/results/remote_engine.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import torch

from benchmarks.server_process import REPOSITORY, free_port
from streaming.engine.base import Engine, Prompt, SamplingParams
from streaming.engine.remote_engine import RemoteEngine, RemoteOptions, generate_body
from streaming.engine.vllm_engine import VllmEngine, VllmOptions
from streaming.engine.vllm_plugin import MAX_ROWS_PER_ITEM
from streaming.model.config import StepAudio2Config
from streaming.model.tokens import SpecialTokens, load_tokenizer

RESULTS = Path(__file__).parent / "results"
SHAPES = {"short": (20, 0), "question": (1000, 375)}  # (text tokens, audio rows)
R1_HIDDEN = 5120
MAX_SEQUENCES = 16
MAX_CONTEXT = 4096
KV_CACHE_BYTES = 256 * 1024 * 1024
START_TIMEOUT_S = 600.0


def prompt_for(shape: str, run: int, hidden: int, patch: int, vocab: int) -> Prompt:
    text, audio = SHAPES[shape]
    generator = torch.Generator().manual_seed(1000 * run + len(shape))
    ids = torch.randint(10, min(vocab, patch) - 10, (text,), generator=generator).tolist()
    if not audio:
        return Prompt(ids)
    # 25 s chunks, each its own audio span (`streaming.model.frontend.split_chunks`).
    first = min(audio, MAX_ROWS_PER_ITEM)
    spans = [patch] * first + ids[:2] + [patch] * (audio - first)
    rows = torch.randn(audio, hidden, generator=generator)
    return Prompt(ids + spans + ids[:5], rows, patch)


async def time_one(engine: Engine, prompt: Prompt, tokens: int) -> tuple[float, float]:
    """(first token ms, per token ms) of one greedy request of `tokens` tokens."""
    start = time.perf_counter()
    stream = await engine.submit(prompt, SamplingParams(max_tokens=tokens))
    first = last = 0.0
    count = 0
    async for _ in stream:
        last = time.perf_counter()
        count += 1
        if count == 1:
            first = last
    return (first - start) * 1e3, (last - first) * 1e3 / max(1, count - 1)


async def measure(engine: Engine, config: dict[str, Any], runs: int, tokens: int) -> dict:
    results: dict[str, Any] = {}
    for shape in SHAPES:
        await time_one(engine, prompt_for(shape, runs, **config), tokens)  # untimed: first shape
        firsts, steps = [], []
        for run in range(runs):
            prompt = prompt_for(shape, run, **config)
            first, step = await time_one(engine, prompt, tokens)
            firsts.append(first)
            steps.append(step)
        results[shape] = {
            "first_token_ms": round(statistics.median(firsts), 2),
            "per_token_ms": round(statistics.median(steps), 3),
            "first_token_ms_runs": [round(x, 2) for x in firsts],
        }
    return results


def start_server(model: Path, port: int) -> subprocess.Popen[bytes]:
    command = [
        *(sys.executable, "-m", "streaming.engine.serve_vllm", str(model)),
        *("--host", "127.0.0.1", "--port", str(port), "--dtype", "float32"),
        *("--max-model-len", str(MAX_CONTEXT), "--max-num-seqs", str(MAX_SEQUENCES)),
        *("--kv-cache-memory-bytes", str(KV_CACHE_BYTES), "--uvicorn-log-level", "warning"),
    ]
    return subprocess.Popen(
        command,
        cwd=REPOSITORY,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the vLLM server exited with code {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise SystemExit("the vLLM server did not answer /health")


def stop_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


async def remote_side(model: Path, config: dict, runs: int, tokens: int) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    process = start_server(model, port)
    try:
        wait_healthy(url, process)
        start_s = time.perf_counter() - started
        engine = RemoteEngine(model, RemoteOptions(url, max_sequences=MAX_SEQUENCES))
        await engine.warm_up()
        results = await measure(engine, config, runs, tokens)
        await engine.close()
    finally:
        stop_group(process)
    return {"start_s": round(start_s, 2), **results}


async def in_process_side(model: Path, config: dict, runs: int, tokens: int) -> dict:
    started = time.perf_counter()
    engine = VllmEngine(
        model,
        VllmOptions(
            dtype="float32",
            max_sequences=MAX_SEQUENCES,
            max_model_len=MAX_CONTEXT,
            cpu_kv_cache_gib=KV_CACHE_BYTES / 1024**3,
        ),
    )
    await engine.warm_up()
    start_s = time.perf_counter() - started
    results = await measure(engine, config, runs, tokens)
    await engine.close()
    return {"start_s": round(start_s, 2), **results}


def request_bytes(hidden: int, patch: int, vocab: int) -> dict[str, Any]:
    """Bytes of one `question` request: ours at this width and R1's, and the prompt_embeds form."""
    text, audio = SHAPES["question"]
    sizes: dict[str, Any] = {}
    for name, width, dtype in (
        ("this_model_float32", hidden, torch.float32),
        ("r1_bfloat16", R1_HIDDEN, torch.bfloat16),
        ("r1_float32", R1_HIDDEN, torch.float32),
    ):
        prompt = prompt_for("question", 0, width, patch, vocab)
        assert prompt.audio_embeds is not None
        prompt.audio_embeds = prompt.audio_embeds.to(dtype)
        body, _ = generate_body(prompt, SamplingParams(), 64, "r", "model")
        element = torch.finfo(dtype).bits // 8
        positions = len(prompt)
        sizes[name] = {
            "audio_rows": audio,
            "positions": positions,
            "generate_body_bytes": len(body),
            "audio_rows_raw_bytes": audio * width * element,
            # /v1/completions prompt_embeds: every position's row, base64 (torch.save adds ~1 KB)
            "prompt_embeds_base64_bytes": 4 * -(-(positions * width * element) // 3),
        }
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="checkpoint; default: embedded")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="2 runs of 8 tokens")
    parser.add_argument("--output", type=Path, default=RESULTS / "remote_engine.json")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.tokens = 2, 8
    from streaming.default_model import default_checkpoint

    model = args.model or default_checkpoint()
    text = StepAudio2Config.from_file(model).text
    patch = SpecialTokens.from_checkpoint(model, load_tokenizer(model)).audio_patch
    config = {"hidden": int(text.hidden_size), "patch": patch, "vocab": int(text.vocab_size)}
    remote = asyncio.run(remote_side(model, config, args.runs, args.tokens))
    in_process = asyncio.run(in_process_side(model, config, args.runs, args.tokens))
    results = {
        "model": str(model),
        "runs": args.runs,
        "tokens": args.tokens,
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "engines": {"remote": remote, "vllm": in_process},
        "request_bytes": request_bytes(**config),
    }
    print(f"{model}, fp32, median of {args.runs} runs, {args.tokens} tokens")
    print(f"{'':<28}{'remote':>12}{'in-process':>12}")
    print(f"{'start s':<28}{remote['start_s']:>12}{in_process['start_s']:>12}")
    for shape in SHAPES:
        for key, unit in (("first_token_ms", "first token ms"), ("per_token_ms", "per token ms")):
            label = f"{shape} {unit}"
            print(f"{label:<28}{remote[shape][key]:>12}{in_process[shape][key]:>12}")
    for name, size in results["request_bytes"].items():
        print(
            f"request bytes, {name}: {size['generate_body_bytes']:,} "
            f"(prompt_embeds form: {size['prompt_embeds_base64_bytes']:,})"
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
