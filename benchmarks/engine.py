"""Both engines side by side in one run: the torch engine and the vLLM engine on one checkpoint.

One random checkpoint directory in the real format (`streaming.model.writer`, preset
`bench50m`: 48.6M parameters, the decode step `benchmarks/modes.py` uses), or the embedded
default (`--model default`), served by both engines at once, in fp32 on CPU. Per engine:

- decode: aggregate tokens/s while `batch` sequences decode together (1, 4, 16, 32);
- prefill: submit to first token for 5 s and 25 s of audio (20 text tokens around 12.5 audio
  rows a second, rows our encoder would give);
- fork: time to the first token of a fork of a sequence holding 25 s of audio and 20 generated
  tokens (a 10-token suffix: an answer segment), against a fresh submit of a context as long
  (new audio: nothing of it is cached);
- cancel: from `cancel()` to the end of the stream of a decoding sequence.

Every prompt is new (fresh audio rows and ids), so vLLM's prefix cache serves forks only. The
engines take turns within each run, so that load from other processes falls on both alike;
figures are medians of `--runs` runs; the ratio is vLLM / torch (above 1: vLLM is faster for
rates, slower for times).

    python -m benchmarks.engine                    # bench50m, both engines (minutes)
    python -m benchmarks.engine --model default    # the embedded 2M-parameter model
    python -m benchmarks.engine --quick            # a smoke run on a tiny checkpoint

Prints a table and writes benchmarks/results/engine.json (engine-default.json with
`--model default`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import torch

from streaming.engine.base import Engine, Prompt, SamplingParams
from streaming.engine.torch_engine import TorchEngine
from streaming.model.checkpoint import LoadedModel, load_checkpoint
from streaming.model.sizes import VLLM_CPU_SMALL, ModelSizes
from streaming.model.writer import parameter_count, write_checkpoint

RESULTS = Path(__file__).parent / "results"
AUDIO_TOKENS_PER_SECOND = 12.5
TEXT_TOKENS = 20  # the chat template and instruction around the audio span
AUDIO_SECONDS = (5, 25)
BATCHES = (1, 4, 16, 32)
FORK_GENERATED = 20  # tokens the source wrote before the fork
FORK_SUFFIX = 10  # the fork's own new tokens (`</think>` and the answer so far)
CANCEL_AFTER = 5  # tokens decoded before the cancel
MAX_CONTEXT = 1024
VLLM_KV_CACHE_GIB = 1.0
ENGINE_NAMES = ("torch", "vllm")
FULL = {"decode_tokens": 64, "runs": 5}
QUICK = {"decode_tokens": 8, "runs": 1}


class Prompts:
    """New prompts on demand: random learned ids and random audio rows, never repeated."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.patch = loaded.special.audio_patch
        self.hidden = loaded.config.text.hidden_size
        self.high = self.patch - 10  # learned (not special) ids stay below the patch id
        self.generator = torch.Generator().manual_seed(0)

    def text(self, length: int) -> Prompt:
        return Prompt(torch.randint(10, self.high, (length,), generator=self.generator).tolist())

    def audio(self, seconds: float) -> Prompt:
        rows = math.ceil(seconds * AUDIO_TOKENS_PER_SECOND)
        text = self.text(TEXT_TOKENS).token_ids
        ids = text[:10] + [self.patch] * rows + text[10:]
        audio = torch.randn(rows, self.hidden, generator=self.generator) * 0.02
        return Prompt(ids, audio, self.patch)


# -- measurements of one engine ------------------------------------------------------------


async def first_token_seconds(start: Callable[[], Any]) -> float:
    """Time from the call that starts a sequence to its first token."""
    started = time.perf_counter()
    stream = await start()
    async for _ in stream:
        break
    elapsed = time.perf_counter() - started
    return elapsed


async def prefill_seconds(engine: Engine, prompt: Prompt) -> float:
    return await first_token_seconds(lambda: engine.submit(prompt, SamplingParams(max_tokens=1)))


async def decode_rate(engine: Engine, prompts: Prompts, batch: int, tokens: int) -> float:
    """Aggregate decoded tokens/s while all `batch` sequences decode together: from the moment
    the last one has its first token (prefills are staggered) to the moment the first ends."""
    params = SamplingParams(max_tokens=tokens + batch)  # the earliest ends `batch` steps early
    streams = [await engine.submit(prompts.text(TEXT_TOKENS), params) for _ in range(batch)]
    iterators = [aiter(s) for s in streams]
    for iterator in iterators:
        await anext(iterator)

    def delivered() -> int:
        return sum(len(s.output.token_ids) for s in streams)

    started, before = time.perf_counter(), delivered()
    drains = [asyncio.create_task(drain(iterator)) for iterator in iterators]
    await asyncio.wait(drains, return_when=asyncio.FIRST_COMPLETED)
    elapsed, decoded = time.perf_counter() - started, delivered() - before
    for stream in streams:
        await engine.cancel(stream.seq_id)
    await asyncio.gather(*drains)
    return decoded / elapsed


async def drain(iterator: AsyncIterator[int]) -> None:
    async for _ in iterator:
        pass


async def fork_seconds(engine: Engine, prompts: Prompts) -> dict[str, float]:
    """First token of a fork against a fresh submit of a context of the same length."""
    source_prompt = prompts.audio(max(AUDIO_SECONDS))
    source = await engine.submit(source_prompt, SamplingParams(max_tokens=FORK_GENERATED))
    await drain(aiter(source))
    suffix = prompts.text(FORK_SUFFIX).token_ids
    position = len(source_prompt) + FORK_GENERATED
    params = SamplingParams(max_tokens=1)
    forked = await first_token_seconds(lambda: engine.fork(source.seq_id, position, suffix, params))
    fresh_context = prompts.audio(max(AUDIO_SECONDS))
    fresh_context.token_ids += prompts.text(FORK_GENERATED + FORK_SUFFIX).token_ids
    fresh = await first_token_seconds(lambda: engine.submit(fresh_context, params))
    return {"fork_s": forked, "fresh_s": fresh}


async def cancel_seconds(engine: Engine, prompts: Prompts) -> float:
    stream = await engine.submit(prompts.text(TEXT_TOKENS), SamplingParams(max_tokens=500))
    iterator = aiter(stream)
    for _ in range(CANCEL_AFTER):
        await anext(iterator)
    started = time.perf_counter()
    await engine.cancel(stream.seq_id)
    await drain(iterator)  # what was already queued, then the end
    return time.perf_counter() - started


# -- the run -------------------------------------------------------------------------------


def open_engines(path: Path, loaded: LoadedModel, names: tuple[str, ...]) -> dict[str, Engine]:
    engines: dict[str, Engine] = {}
    if "torch" in names:
        engines["torch"] = TorchEngine(
            loaded.model.model,
            loaded.model.lm_head,
            max_slots=max(BATCHES),
            max_seq_len=MAX_CONTEXT,
        )
    if "vllm" in names:
        from streaming.engine.vllm_engine import VllmEngine, VllmOptions

        engines["vllm"] = VllmEngine(
            path,
            VllmOptions(
                dtype="float32",
                max_sequences=max(BATCHES),
                max_model_len=MAX_CONTEXT,
                enforce_eager=True,  # compile time is not what is measured here
                cpu_kv_cache_gib=VLLM_KV_CACHE_GIB,
            ),
        )
    return engines


async def measure(path: Path, names: tuple[str, ...], settings: dict) -> dict:
    loaded = load_checkpoint(path, dtype=torch.float32)
    prompts = Prompts(loaded)
    engines = open_engines(path, loaded, names)
    runs, tokens = settings["runs"], settings["decode_tokens"]
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in engines}

    def add(name: str, key: str, value: float) -> None:
        samples[name].setdefault(key, []).append(value)

    try:
        started = {}
        for name, engine in engines.items():
            began = time.perf_counter()
            await engine.warm_up()
            started[name] = time.perf_counter() - began
            await decode_rate(engine, prompts, 1, 4)  # first-use costs out of the figures
        for _ in range(runs):
            for name, engine in engines.items():
                for seconds in AUDIO_SECONDS:
                    add(
                        name,
                        f"prefill_{seconds}",
                        await prefill_seconds(engine, prompts.audio(seconds)),
                    )
                for batch in BATCHES:
                    add(name, f"decode_{batch}", await decode_rate(engine, prompts, batch, tokens))
                fork = await fork_seconds(engine, prompts)
                add(name, "fork", fork["fork_s"])
                add(name, "fresh", fork["fresh_s"])
                add(name, "cancel", await cancel_seconds(engine, prompts))
    finally:
        for engine in engines.values():
            await engine.close()
    medians = {n: {k: statistics.median(v) for k, v in s.items()} for n, s in samples.items()}
    return tables(medians, started)


def audio_tokens(seconds: float) -> int:
    """Prompt positions of `seconds` of audio with the text around it."""
    return math.ceil(seconds * AUDIO_TOKENS_PER_SECOND) + TEXT_TOKENS


def tables(medians: dict[str, dict[str, float]], started: dict[str, float]) -> dict:
    names = list(medians)

    def row(key: str, scale: float, unit: str) -> dict[str, float]:
        values = {f"{n}_{unit}": scale * medians[n][key] for n in names}
        if len(names) == 2:
            values["vllm_over_torch"] = medians["vllm"][key] / medians["torch"][key]
        return values

    prefill_rows = [
        {
            "audio_seconds": s,
            "tokens": audio_tokens(s),
            **row(f"prefill_{s}", 1000, "ms"),
        }
        for s in AUDIO_SECONDS
    ]
    return {
        "engines": names,
        "start_seconds": started,
        "prefill": prefill_rows,
        "decode": [{"batch": b, **row(f"decode_{b}", 1, "tokens_per_s")} for b in BATCHES],
        "fork": {
            "context_tokens": audio_tokens(max(AUDIO_SECONDS)) + FORK_GENERATED + FORK_SUFFIX,
            "fork_first_token": row("fork", 1000, "ms"),
            "fresh_first_token": row("fresh", 1000, "ms"),
            "fork_over_fresh": {n: medians[n]["fork"] / medians[n]["fresh"] for n in names},
        },
        "cancel": row("cancel", 1000, "ms"),
    }


def print_table(results: dict) -> None:
    names = results["engines"]
    load = results["load_average_1min"]
    print(
        f"{results['model']}: {results['parameters'] / 1e6:.1f}M parameters, fp32, torch threads "
        f"{results['torch_threads']}, median of {results['runs']} runs, load average "
        f"{load['before']:.1f} -> {load['after']:.1f} on {os.cpu_count()} cores"
    )
    both = len(names) == 2

    def cells(row: dict, unit: str) -> str:
        text = "".join(f"{row[f'{n}_{unit}']:>12.1f}" for n in names)
        return text + (f"{row['vllm_over_torch']:>11.2f}" if both else "")

    heading = "".join(f"{n:>12}" for n in names) + (f"{'vllm/torch':>11}" if both else "")
    print(f"\n{'prefill ms':<22}{heading}")
    for row in results["prefill"]:
        label = f"{row['audio_seconds']} s audio ({row['tokens']} tok)"
        print(f"{label:<22}{cells(row, 'ms')}")
    print(f"\n{'decode tokens/s':<22}{heading}")
    for row in results["decode"]:
        print(f"{'batch ' + str(row['batch']):<22}{cells(row, 'tokens_per_s')}")
    fork = results["fork"]
    print(f"\n{'first token ms':<22}{heading}")
    print(f"{'fork (reused prefix)':<22}{cells(fork['fork_first_token'], 'ms')}")
    print(f"{'fresh, same length':<22}{cells(fork['fresh_first_token'], 'ms')}")
    print(f"{'cancel ms':<22}{cells(results['cancel'], 'ms')}")
    ratios = ", ".join(f"{n} {v:.2f}" for n, v in fork["fork_over_fresh"].items())
    print(f"\nfork / fresh first token: {ratios}")


def checkpoint_for(model: str, quick: bool, workdir: Path) -> tuple[Path, str]:
    if model == "default":
        from streaming.default_model import default_checkpoint

        return default_checkpoint(), "embedded default"
    sizes: ModelSizes | str = VLLM_CPU_SMALL if quick else model
    name = "quick" if quick else model
    return write_checkpoint(workdir / name, sizes), name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny checkpoint, one run")
    parser.add_argument("--model", default="bench50m", help="bench50m (default) or default")
    parser.add_argument(
        "--engines", default=",".join(ENGINE_NAMES), help="comma-separated: torch, vllm"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=min(2, len(os.sched_getaffinity(0))),
        help="the torch engine's intra-op threads (vLLM's CPU worker picks its own)",
    )
    parser.add_argument("--runs", type=int, default=None, help="runs to take medians of")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = tuple(n for n in args.engines.split(",") if n)
    unknown = set(names) - set(ENGINE_NAMES)
    if unknown:
        raise SystemExit(f"error: unknown engines {sorted(unknown)}; valid: torch, vllm")
    settings = dict(QUICK if args.quick else FULL)
    if args.runs is not None:
        settings["runs"] = args.runs
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as workdir:
        path, model_name = checkpoint_for(args.model, args.quick, Path(workdir))
        results = asyncio.run(measure(path, names, settings))
        sizes = None if args.model == "default" or args.quick else args.model
        parameters = (
            parameter_count(sizes)
            if sizes
            else sum(p.numel() for p in load_checkpoint(path).model.parameters())
        )
    results.update(
        {
            "model": model_name,
            "parameters": parameters,
            "quick": args.quick,
            "runs": settings["runs"],
            "decode_tokens": settings["decode_tokens"],
            "torch_threads": torch.get_num_threads(),
            "dtype": "float32",
            "device": "cpu",
            "torch": torch.__version__,
            # Other processes on the same cores distort every figure: how busy the machine was.
            "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        }
    )
    print_table(results)
    default_name = "engine-default.json" if args.model == "default" else "engine.json"
    output = args.output or RESULTS / default_name
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {output}")


if __name__ == "__main__":  # vLLM starts its workers by spawning: this module is re-imported
    main()
