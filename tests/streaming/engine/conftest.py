"""A tiny random Qwen2 model (fixed seed, fp32, CPU) and the plain transformers reference; for
the conformance suite, a random checkpoint directory that every engine serves, one vLLM engine
for the session, and one vLLM server for the session (`streaming.engine.serve_vllm`, on a free
port of 127.0.0.1) with the remote engine on it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import Qwen2Config, Qwen2ForCausalLM

from benchmarks.server_process import REPOSITORY, free_port
from streaming.engine.remote_engine import RemoteEngine, RemoteOptions
from streaming.engine.vllm_engine import VllmEngine, VllmOptions
from streaming.model.checkpoint import LoadedModel, load_checkpoint
from streaming.model.sizes import VLLM_CPU_SMALL
from streaming.model.writer import write_checkpoint

VOCAB = 256


def tiny_config() -> Qwen2Config:
    return Qwen2Config(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        rope_theta=10000.0,
        tie_word_embeddings=False,
    )


@pytest.fixture(scope="session")
def tiny_model() -> Qwen2ForCausalLM:
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(tiny_config()).eval()
    # Larger weights than the default init so that logits are spread and argmax ties are rare.
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.normal_(0, 0.2)
    return model


@pytest.fixture(scope="session")
def greedy_reference():
    """Tests take the reference through a fixture: test folders here are not packages."""
    return reference_greedy


@torch.inference_mode()
def reference_greedy(model: Qwen2ForCausalLM, embeds: torch.Tensor, steps: int) -> list[int]:
    """Greedy tokens by full recompute with transformers' own forward on `inputs_embeds`."""
    tokens: list[int] = []
    for _ in range(steps):
        logits = model(inputs_embeds=embeds[None]).logits[0, -1]
        token = int(logits.argmax())
        tokens.append(token)
        next_embed = model.model.embed_tokens(torch.tensor([token]))
        embeds = torch.cat([embeds, next_embed])
    return tokens


# --- the conformance suite: one checkpoint directory, both engines ---------------------------

# A checkpoint in the real format that vLLM's CPU build can serve (head size 32: its kernels
# start there) and small enough that a vLLM start-up takes seconds of model work.
# vLLM's CPU kernels take its head size (32); a short context keeps the suite quick
CONFORMANCE_SIZES = dataclasses.replace(VLLM_CPU_SMALL, max_position_embeddings=512)
CONFORMANCE_CONTEXT = 256  # max_context of both engines in the suite
CONFORMANCE_SEQUENCES = 8
# The vLLM engine's KV cache in the suite: 256 MiB is thousands of positions of this model.
VLLM_TEST_KV_CACHE_GIB = 0.25
DECODER_WEIGHT_STD = 0.2  # spread logits, so that greedy argmax ties are rare (see tiny_model)


def spread_decoder_weights(path: Path) -> None:
    """Redraw the decoder's matrices of a written checkpoint with a larger spread, in place (the
    writer's default init makes near-equal logits, where two exact implementations may pick
    different argmaxes)."""
    generator = torch.Generator().manual_seed(0)
    for shard in sorted(path.glob("*.safetensors")):
        tensors = load_file(str(shard))
        for name, tensor in tensors.items():
            if name.startswith(("model.", "lm_head.")) and tensor.dim() > 1:
                spread = torch.randn(tensor.shape, generator=generator) * DECODER_WEIGHT_STD
                tensors[name] = spread.to(tensor.dtype)
        save_file(tensors, str(shard), metadata={"format": "pt"})


@pytest.fixture(scope="session")
def conformance_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = write_checkpoint(tmp_path_factory.mktemp("conformance"), CONFORMANCE_SIZES)
    spread_decoder_weights(path)
    return path


@pytest.fixture(scope="session")
def conformance_model(conformance_checkpoint: Path) -> LoadedModel:
    """The same checkpoint in fp32 for the torch engine and the transformers reference."""
    return load_checkpoint(conformance_checkpoint, dtype=torch.float32)


@pytest.fixture(scope="session")
def vllm_engine(conformance_checkpoint: Path) -> Iterator[VllmEngine]:
    """One vLLM engine for the whole session (a start-up costs ~30 s): eager, fp32, small cache.
    It runs on its own event loop, so every test's loop may use it."""
    engine = VllmEngine(
        conformance_checkpoint,
        VllmOptions(
            dtype="float32",
            max_sequences=CONFORMANCE_SEQUENCES,
            max_model_len=CONFORMANCE_CONTEXT,
            enforce_eager=True,
            cpu_kv_cache_gib=VLLM_TEST_KV_CACHE_GIB,
        ),
    )
    run_apart(engine.warm_up())
    yield engine
    run_apart(engine.close())


# The vLLM server of the remote engine: as small as the in-process engine's (its KV cache in
# bytes: 64 MiB is thousands of positions of this model), one process for the whole session. Its
# context is the checkpoint's whole (the conformance engine takes CONFORMANCE_CONTEXT of it), so
# that a test of its own can run a request long enough to be cancelled midway on a busy machine.
REMOTE_KV_CACHE_BYTES = 64 * 1024 * 1024
REMOTE_SERVER_CONTEXT = CONFORMANCE_SIZES.max_position_embeddings
# vLLM's start on a busy two-core machine: ~25 s here; only a hang fails on it.
REMOTE_START_TIMEOUT_S = 600.0
REMOTE_STOP_TIMEOUT_S = 30.0


@pytest.fixture(scope="session")
def vllm_server(conformance_checkpoint: Path) -> Iterator[str]:
    """`python -m streaming.engine.serve_vllm` on the conformance checkpoint, on a free port of
    127.0.0.1, healthy on entry; its URL. Stopped (its process group: vLLM's engine core and
    worker too) at the end of the session."""
    port = free_port()
    command = [
        *(sys.executable, "-m", "streaming.engine.serve_vllm", str(conformance_checkpoint)),
        *("--host", "127.0.0.1", "--port", str(port)),
        *("--max-model-len", str(REMOTE_SERVER_CONTEXT)),
        *("--max-num-seqs", str(CONFORMANCE_SEQUENCES)),
        *("--kv-cache-memory-bytes", str(REMOTE_KV_CACHE_BYTES)),
        *("--dtype", "float32", "--enforce-eager", "--uvicorn-log-level", "warning"),
    ]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    process = subprocess.Popen(command, cwd=REPOSITORY, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process)
        yield url
    finally:
        stop_group(process)


def wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + REMOTE_START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the vLLM server exited with code {process.returncode}"
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise AssertionError(f"the vLLM server was not healthy within {REMOTE_START_TIMEOUT_S:g} s")


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group (it was started in a session of its own), then
    SIGKILL to what is left of it after the timeout."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=REMOTE_STOP_TIMEOUT_S)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@pytest.fixture(scope="session")
def remote_engine(conformance_checkpoint: Path, vllm_server: str) -> Iterator[RemoteEngine]:
    """The remote engine on the session's vLLM server; like the vLLM engine, on a loop of its
    own, so that every test's loop may use it."""
    engine = RemoteEngine(
        conformance_checkpoint,
        RemoteOptions(
            vllm_server,
            max_sequences=CONFORMANCE_SEQUENCES,
            max_context=CONFORMANCE_CONTEXT,
            affinity_header="X-Session-ID",
        ),
    )
    run_apart(engine.warm_up())
    yield engine
    run_apart(engine.close())


def run_apart(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine to its end on a loop of its own (a test's loop may be running here)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, coroutine).result()
