"""Torch engine against transformers' generate(): prefill time and decode throughput on CPU.

The model is a random Qwen2 decoder (decoder only: no audio encoder; audio tokens are prompt
positions like any other). Default config, ~63M parameters with the untied lm_head:
hidden 512, 8 layers, 8 heads, 2 KV heads, intermediate 2048, vocab 32000.

    python -m benchmarks.engine            # the full run (about 3 minutes on 2 cores)
    python -m benchmarks.engine --quick    # a smoke run on a tiny model (seconds)

Prints a table and writes benchmarks/results/engine.json. Every figure is the median of
`--runs` runs. Targets: batch-1 decode >= 1.5x generate(); batch 16 >= 8x batch 1 in aggregate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from streaming.engine.base import Prompt, SamplingParams
from streaming.engine.torch_engine import TorchEngine

RESULTS = Path(__file__).parent / "results" / "engine.json"
AUDIO_TOKENS_PER_SECOND = 12.5
TEXT_TOKENS = 20  # the chat template and instruction around the audio span
AUDIO_SECONDS = (5, 25)
BATCHES = (1, 4, 16)

FULL = {
    "config": dict(
        hidden_size=512,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=2,
        intermediate_size=2048,
        vocab_size=32000,
    ),
    "decode_tokens": 64,
    "runs": 5,
}
QUICK = {
    "config": dict(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        vocab_size=512,
    ),
    "decode_tokens": 8,
    "runs": 1,
}


def build_model(config: dict, dtype: torch.dtype) -> Qwen2ForCausalLM:
    torch.manual_seed(0)
    qwen2 = Qwen2Config(**config, max_position_embeddings=4096, tie_word_embeddings=False)
    return Qwen2ForCausalLM(qwen2).to(dtype).eval()


def prompt_ids(length: int, vocab: int, seed: int) -> list[int]:
    return torch.randint(
        0, vocab, (length,), generator=torch.Generator().manual_seed(seed)
    ).tolist()


# -- the torch engine ------------------------------------------------------------------------


async def engine_prefill_seconds(engine: TorchEngine, length: int, vocab: int) -> float:
    """Submit to first token of one prompt (prefill, lm_head, sampling, the thread hop)."""
    started = time.perf_counter()
    stream = await engine.submit(Prompt(prompt_ids(length, vocab, 0)), SamplingParams(max_tokens=1))
    async for _ in stream:
        pass
    return time.perf_counter() - started


async def engine_decode_rate(engine: TorchEngine, batch: int, tokens: int, vocab: int) -> float:
    """Aggregate decoded tokens/s while all `batch` sequences decode together: from the moment
    the last one has its first token (prefills are staggered) to the moment the first one ends."""
    params = SamplingParams(max_tokens=tokens + batch)  # the earliest ends `batch` steps early
    streams = [
        await engine.submit(Prompt(prompt_ids(TEXT_TOKENS, vocab, i)), params) for i in range(batch)
    ]
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


# -- transformers --------------------------------------------------------------------------


@torch.inference_mode()
def generate_seconds(model: Qwen2ForCausalLM, batch: int, length: int, new_tokens: int) -> float:
    vocab = model.config.vocab_size
    ids = torch.tensor([prompt_ids(length, vocab, i) for i in range(batch)])
    started = time.perf_counter()
    model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        do_sample=False,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        pad_token_id=0,
    )
    return time.perf_counter() - started


def generate_decode_rate(model: Qwen2ForCausalLM, batch: int, tokens: int) -> float:
    """Aggregate decoded tokens/s of generate(), its prefill (a 1-token generate) subtracted."""
    total = generate_seconds(model, batch, TEXT_TOKENS, tokens)
    first = generate_seconds(model, batch, TEXT_TOKENS, 1)
    return batch * (tokens - 1) / (total - first)


@torch.inference_mode()
def transformers_prefill_seconds(model: Qwen2ForCausalLM, length: int) -> float:
    ids = torch.tensor([prompt_ids(length, model.config.vocab_size, 0)])
    started = time.perf_counter()
    model(ids, logits_to_keep=1)
    return time.perf_counter() - started


# -- the run -------------------------------------------------------------------------------


async def run(settings: dict, dtype: torch.dtype) -> dict:
    """Engine and transformers measured in turn within each run, so that load from other
    processes falls on both alike; medians over the runs."""
    model = build_model(settings["config"], dtype)
    vocab = model.config.vocab_size
    runs, tokens = settings["runs"], settings["decode_tokens"]
    engine = TorchEngine(model.model, model.lm_head, max_slots=max(BATCHES), max_seq_len=1024)
    results: dict = {"prefill": [], "decode": []}
    try:
        await engine_decode_rate(engine, 1, 4, vocab)  # warm-up
        generate_seconds(model, 1, TEXT_TOKENS, 2)
        for seconds in AUDIO_SECONDS:
            length = math.ceil(seconds * AUDIO_TOKENS_PER_SECOND) + TEXT_TOKENS
            ours, theirs = [], []
            for _ in range(runs):
                ours.append(await engine_prefill_seconds(engine, length, vocab))
                theirs.append(transformers_prefill_seconds(model, length))
            results["prefill"].append(
                {
                    "audio_seconds": seconds,
                    "tokens": length,
                    "engine_ms": 1000 * statistics.median(ours),
                    "transformers_forward_ms": 1000 * statistics.median(theirs),
                }
            )
        for batch in BATCHES:
            ours, theirs = [], []
            for _ in range(runs):
                ours.append(await engine_decode_rate(engine, batch, tokens, vocab))
                theirs.append(generate_decode_rate(model, batch, tokens))
            results["decode"].append(
                {
                    "batch": batch,
                    "engine_tokens_per_s": statistics.median(ours),
                    "generate_tokens_per_s": statistics.median(theirs),
                }
            )
    finally:
        await engine.close()
    results["parameters"] = sum(p.numel() for p in model.parameters())
    return results


def summarise(results: dict) -> dict:
    decode = {row["batch"]: row for row in results["decode"]}
    one, most = decode[min(BATCHES)], decode[max(BATCHES)]
    return {
        "batch1_speedup_over_generate": one["engine_tokens_per_s"] / one["generate_tokens_per_s"],
        "batch16_over_batch1": most["engine_tokens_per_s"] / one["engine_tokens_per_s"],
    }


def print_table(results: dict) -> None:
    load = results["load_average_1min"]
    print(
        f"parameters: {results['parameters'] / 1e6:.1f}M, threads: {results['threads']}, "
        f"median of {results['runs']} runs, load average {load['before']:.1f} -> "
        f"{load['after']:.1f} on {os.cpu_count()} cores"
    )
    print(f"\n{'audio s':>8} {'tokens':>7} {'engine prefill ms':>18} {'HF forward ms':>14}")
    for row in results["prefill"]:
        print(
            f"{row['audio_seconds']:>8} {row['tokens']:>7} {row['engine_ms']:>18.1f} "
            f"{row['transformers_forward_ms']:>14.1f}"
        )
    print(f"\n{'batch':>6} {'engine tok/s':>13} {'generate() tok/s':>17} {'ratio':>6}")
    for row in results["decode"]:
        ratio = row["engine_tokens_per_s"] / row["generate_tokens_per_s"]
        print(
            f"{row['batch']:>6} {row['engine_tokens_per_s']:>13.1f} "
            f"{row['generate_tokens_per_s']:>17.1f} {ratio:>6.2f}"
        )
    summary = results["summary"]
    print(
        f"\nbatch-1 decode vs generate(): {summary['batch1_speedup_over_generate']:.2f}x "
        "(target >= 1.5x)"
    )
    print(f"batch-16 aggregate vs batch 1: {summary['batch16_over_batch1']:.2f}x (target >= 8x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, one run: a smoke test")
    parser.add_argument(
        "--threads",
        type=int,
        default=min(2, len(os.sched_getaffinity(0))),
        help="torch intra-op threads (default: up to 2, the cores of a small box)",
    )
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = QUICK if args.quick else FULL
    load_before = os.getloadavg()[0]
    results = asyncio.run(run(settings, getattr(torch, args.dtype)))
    # Other processes on the same cores distort every figure: record how busy the machine was.
    results["load_average_1min"] = {"before": load_before, "after": os.getloadavg()[0]}
    results.update(
        {
            "quick": args.quick,
            "threads": torch.get_num_threads(),
            "runs": settings["runs"],
            "decode_tokens": settings["decode_tokens"],
            "config": settings["config"],
            "device": "cpu",
            "dtype": args.dtype,
            "torch": torch.__version__,
            "summary": summarise(results),
        }
    )
    print_table(results)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
