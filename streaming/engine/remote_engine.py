"""The remote engine: the decoder on a vLLM server elsewhere, over HTTP.

Our process keeps the WebSocket sessions, the audio encoder and adaptor, the prompts and speech;
a vLLM server (`python -m streaming.engine.serve_vllm MODEL_DIR`, or stock `vllm serve` with the
flags that module lists) holds the decoder and its KV cache, on the same checkpoint directory.
The engine speaks vLLM's token-in/token-out endpoint, `POST /inference/v1/generate`
(`--enable-scale-out`), streamed: token ids in, token ids out, as the in-process engines.

**How audio travels.** A prompt goes as its token ids, with one `<audio_patch>` id per audio row
exactly as our prompt builder wrote it, and the audio rows as multimodal embedding items of the
request (`features`: each run of audio positions, cut into items of at most one 25 s chunk, its
placeholder range and a content hash; `--enable-mm-embeds`). This is the smallest form stock
vLLM takes: only the audio rows cross the wire (R1: 375 rows x 5120 x 2 bytes = 3.8 MB for a
30 s question, 5.1 MB in base64), where the other form, `/v1/completions` with `prompt_embeds`,
must carry a row for every position of the prompt (R1, 375 audio + 1000 text positions: 14.1 MB,
18.8 MB in base64), needs the 1.6 GB embedding table of R1 in our process to build them, and
defeats the prefix cache past the source's prompt (vLLM keys an embeds prompt's blocks by the
embeddings, a fork's generated part by token ids). With token ids, vLLM's prefix cache keys
every block as the in-process engine's do, so a fork (sent as a new request whose prompt is the
source's context up to the cut and the suffix) reuses every whole block its source computed,
and `SequenceOutput.cached_tokens` is the server's count (`--enable-prompt-tokens-details`),
known when the stream ends. Each item is vLLM's serialized `MultiModalKwargsItem` (msgpack, the
layout of `vllm.v1.serial_utils`, written here by a few lines so that our process needs no vLLM);
rows go in their own dtype (bfloat16 halves them against float32: `RemoteOptions.wire_dtype`).

**Cancel** ends the caller's stream as cancelled at once (the sequence runs on in the server's
process until the cancel reaches it, and what it sent meanwhile is not handed out), closes the
HTTP stream (vLLM aborts a request whose client went away) and also posts the request id to
`/inference/v1/abort_requests`, for the case where a proxy in between keeps the upstream
connection open. **Capacity and health**: `/health`, polled; the longest context from
`/v1/models` (`max_model_len`), the KV cache size from `/metrics` (`vllm:cache_config_info`); the
number of sequences is configured here (`RemoteOptions.max_sequences`), since a server may be
shared. **Session affinity**: with `RemoteOptions.affinity_header` every request carries a key
so that a router keeps a conversation's requests on one replica (whose cache holds its prefix):
a fork has its source's key, a new sequence the hash of its prompt's head up to and with its
first audio item (a conversation's turns begin the same way until truncation drops the oldest
exchange, and then the cached prefix is gone anyway). `X-data-parallel-rank` (vLLM's own
data-parallel routing) takes a rank: set `affinity_ranks` and the key becomes one.

Bad input is refused here, before any round trip, with the checks every engine makes
(`check_context`). Like the vLLM engine, the engine runs on an event loop of its own in a thread
of its own, so that any event loop may call it and the encoding of megabytes of audio into JSON
never runs on the server's loop.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import hashlib
import itertools
import json
import logging
import struct
import uuid
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
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
from streaming.model.config import StepAudio2Config

logger = logging.getLogger(__name__)


GENERATE_PATH = "/inference/v1/generate"
ABORT_PATH = "/inference/v1/abort_requests"
# vLLM names the engine request of a /generate call so (its ServingTokens.serve_tokens); the
# stream's chunks carry the name too, which is used once one has arrived.
ENGINE_REQUEST_PREFIX = "generate-tokens-"
# A prompt without audio is keyed for affinity by this many of its first ids.
AFFINITY_TEXT_TOKENS = 256
SERVE_HINT = (
    "start it with `python -m streaming.engine.serve_vllm MODEL_DIR --port N` (or `vllm serve "
    "MODEL_DIR` with the flags of docs/scaling.md) and pass --engine-url http://HOST:N"
)
_WIRE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class RemoteOptions:
    """Where the vLLM server is and how this process uses it (`--engine remote --help`)."""

    url: str  # http://host:port of the vLLM server
    max_sequences: int = 16  # sequences this process runs there at once (capacity, /readyz)
    max_context: int | None = None  # longest context; default and cap: the server's max_model_len
    api_key: str | None = None  # the server's --api-key, sent as a bearer token
    affinity_header: str | None = None  # e.g. X-Session-ID for a router, X-data-parallel-rank
    affinity_ranks: int | None = None  # the header's value is a rank below this (data parallel)
    wire_dtype: str | None = None  # audio rows sent as float32, bfloat16, float16; None: as given
    abort_on_cancel: bool = True  # post the request to /inference/v1/abort_requests on cancel
    connect_timeout_s: float = 10.0  # connecting, and every answer but a token stream's
    read_timeout_s: float | None = 300.0  # longest silence inside a token stream
    health_interval_s: float = 2.0  # /health is polled this often

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"engine url {self.url!r} must start with http:// or https://")
        if self.max_sequences < 1:
            raise ValueError(f"max_sequences must be >= 1, got {self.max_sequences}")
        if self.max_context is not None and self.max_context < 2:
            raise ValueError(f"max_context must be >= 2, got {self.max_context}")
        if self.affinity_ranks is not None and self.affinity_ranks < 1:
            raise ValueError(f"affinity_ranks must be >= 1, got {self.affinity_ranks}")
        if self.wire_dtype is not None and self.wire_dtype not in _WIRE_DTYPES:
            raise ValueError(
                f"wire_dtype {self.wire_dtype!r} is not one of {', '.join(_WIRE_DTYPES)}"
            )
        if self.health_interval_s <= 0 or self.connect_timeout_s <= 0:
            raise ValueError("health_interval_s and connect_timeout_s must be > 0")


@dataclass(frozen=True)
class ServerInfo:
    """What the server says of itself at start-up."""

    model: str  # the served model name (requests name it)
    max_model_len: int
    kv_cache_tokens: int  # 0 where /metrics does not say


# --- the request body -----------------------------------------------------------------------


class _Ext:
    """A msgpack extension value."""

    def __init__(self, code: int, data: bytes) -> None:
        self.code, self.data = code, data


def msgpack(value: Any) -> bytes:
    """The msgpack encoding of dicts, lists, tuples, strings, ints, bools, None and `_Ext`: all
    that an audio item needs (vLLM decodes it with msgspec)."""
    out = bytearray()
    _pack(value, out)
    return bytes(out)


def _pack(value: Any, out: bytearray) -> None:
    if value is None:
        out.append(0xC0)
    elif value is True or value is False:
        out.append(0xC3 if value else 0xC2)
    elif isinstance(value, int):
        if 0 <= value < 0x80:
            out.append(value)
        elif -32 <= value < 0:
            out.append(value & 0xFF)
        elif value >= 0:
            for code, form, limit in ((0xCC, ">B", 8), (0xCD, ">H", 16), (0xCE, ">I", 32)):
                if value < 1 << limit:
                    out += bytes((code,)) + struct.pack(form, value)
                    break
            else:
                out += b"\xcf" + struct.pack(">Q", value)
        else:
            out += b"\xd3" + struct.pack(">q", value)
    elif isinstance(value, str):
        raw = value.encode()
        _head(out, len(raw), 0xA0, 32, 0xD9, 0xDA, 0xDB)
        out += raw
    elif isinstance(value, (list, tuple)):
        _head(out, len(value), 0x90, 16, None, 0xDC, 0xDD)
        for item in value:
            _pack(item, out)
    elif isinstance(value, dict):
        _head(out, len(value), 0x80, 16, None, 0xDE, 0xDF)
        for key, item in value.items():
            _pack(key, out)
            _pack(item, out)
    elif isinstance(value, _Ext):
        size = len(value.data)
        if size < 0x100:
            out += bytes((0xC7, size))
        elif size < 0x10000:
            out += b"\xc8" + struct.pack(">H", size)
        else:
            out += b"\xc9" + struct.pack(">I", size)
        out.append(value.code)
        out += value.data
    else:
        raise TypeError(f"cannot encode {type(value).__name__}")


def _head(
    out: bytearray, size: int, fix: int, fix_limit: int, one: int | None, two: int, four: int
) -> None:
    if size < fix_limit:
        out.append(fix | size)
    elif one is not None and size < 0x100:
        out += bytes((one, size))
    elif size < 0x10000:
        out += bytes((two,)) + struct.pack(">H", size)
    else:
        out += bytes((four,)) + struct.pack(">I", size)


# vLLM's msgpack extension code for a raw tensor buffer (vllm.v1.serial_utils.CUSTOM_TYPE_RAW_VIEW)
_RAW_VIEW = 3


def audio_item(rows: torch.Tensor) -> tuple[str, str]:
    """One audio item as `/inference/v1/generate` takes it: base64 of the msgpack of a
    `MultiModalKwargsItem` whose `audio_embeds` are `rows` (a batched field: one item), and its
    content hash (vLLM's key for the item in its prefix and encoder caches)."""
    rows = rows.detach().cpu().contiguous()
    raw = rows.view(torch.uint8).numpy().tobytes()
    dtype = str(rows.dtype).removeprefix("torch.")
    item = {
        "audio_embeds": {
            "data": [dtype, list(rows.shape), _Ext(_RAW_VIEW, raw)],
            "field": ["batched", {"keep_on_cpu": False}],
        }
    }
    digest = hashlib.sha256(f"{dtype}{tuple(rows.shape)}".encode())
    digest.update(raw)
    return base64.b64encode(msgpack(item)).decode("ascii"), digest.hexdigest()


def audio_items(prompt: Prompt) -> list[tuple[int, torch.Tensor]]:
    """(offset, rows) of each audio item of a prompt: every run of consecutive audio positions,
    cut into pieces of at most one 25 s chunk (vLLM's budget per item). ValueError where rows do
    not sit at `<audio_patch>` positions."""
    positions = prompt.positions()
    if not positions:
        return []
    assert prompt.audio_embeds is not None
    ids, patch = prompt.token_ids, prompt.audio_patch_id
    if any(ids[p] != patch for p in positions):
        raise ValueError("audio rows must sit at <audio_patch> positions of the prompt")
    items: list[tuple[int, torch.Tensor]] = []
    row = 0
    for start, length in audio_runs(positions):
        for offset in range(0, length, MAX_ROWS_PER_ITEM):
            size = min(MAX_ROWS_PER_ITEM, length - offset)
            items.append((start + offset, prompt.audio_embeds[row + offset : row + offset + size]))
        row += length
    return items


def generate_body(
    prompt: Prompt,
    params: SamplingParams,
    max_tokens: int,
    request_id: str,
    model: str | None = None,
    wire_dtype: torch.dtype | None = None,
) -> tuple[bytes, tuple[int, str] | None]:
    """The JSON body of a streamed `/inference/v1/generate` request, and where the prompt's
    first audio item ends with its hash (None without audio)."""
    sampling: dict[str, Any] = {
        "temperature": params.temperature,
        "top_p": params.top_p,
        "repetition_penalty": params.repetition_penalty,
        "max_tokens": max_tokens,
        "stop_token_ids": list(params.stop_ids),
        "ignore_eos": True,  # only our stop ids end a sequence
        "detokenize": False,
    }
    if params.seed is not None and params.temperature > 0:
        sampling["seed"] = params.seed
    body: dict[str, Any] = {
        "request_id": request_id,
        "token_ids": list(prompt.token_ids),
        "sampling_params": sampling,
        "stream": True,
        "stream_options": {"include_usage": True},
        "output_mode": "tokens",
    }
    if model is not None:
        body["model"] = model
    first_audio = None
    items = audio_items(prompt)
    if items:
        encoded = [
            audio_item(rows if wire_dtype is None else rows.to(wire_dtype)) for _, rows in items
        ]
        first_audio = (items[0][0] + len(items[0][1]), encoded[0][1])
        body["features"] = {
            "mm_hashes": {"audio": [digest for _, digest in encoded]},
            "mm_placeholders": {
                "audio": [{"offset": offset, "length": len(rows)} for offset, rows in items]
            },
            "kwargs_data": {"audio": [data for data, _ in encoded]},
        }
    return json.dumps(body, separators=(",", ":")).encode(), first_audio


def affinity_key(prompt: Prompt, first_audio: tuple[int, str] | None) -> str:
    """A new sequence's routing key: its ids up to the end of its first audio item and that
    item's hash, or its first ids where it has no audio."""
    digest = hashlib.sha256()
    end = AFFINITY_TEXT_TOKENS
    if first_audio is not None:
        end = first_audio[0]
        digest.update(first_audio[1].encode())
    ids = prompt.token_ids[:end]
    digest.update(struct.pack(f"<{len(ids)}q", *ids))
    return digest.hexdigest()[:32]


# --- the server's answers -------------------------------------------------------------------


def parse_kv_cache_tokens(metrics: str) -> int:
    """KV cache positions from vLLM's `vllm:cache_config_info` (0 where it is not there)."""
    for line in metrics.splitlines():
        if not line.startswith("vllm:cache_config_info{"):
            continue
        labels = dict(
            part.split("=", 1) for part in line[line.index("{") + 1 : line.rindex("}")].split(",")
        )
        values = {key: value.strip('"') for key, value in labels.items()}
        if values.get("kv_cache_size_tokens", "None").isdigit():
            return int(values["kv_cache_size_tokens"])
        blocks, size = values.get("num_gpu_blocks", ""), values.get("block_size", "")
        if blocks.isdigit() and size.isdigit():
            return int(blocks) * int(size)
    return 0


def _error_message(response_text: str) -> str:
    try:
        body = json.loads(response_text)
    except ValueError:
        return response_text.strip()[:500]
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        return str(error.get("message") or error.get("detail") or error)
    return str(error)


async def read_server_info(client: httpx.AsyncClient, url: str) -> ServerInfo:
    """/health, /v1/models and /metrics; EngineError saying what to do where the server cannot
    be reached or is not a vLLM server."""
    try:
        health = await client.get(f"{url}/health")
        if health.status_code != 200:
            raise EngineError(
                f"the vLLM server at {url} is not healthy (/health answered {health.status_code})"
            )
        models = await client.get(f"{url}/v1/models")
        models.raise_for_status()
        data = models.json()["data"][0]
        try:
            metrics = await client.get(f"{url}/metrics")
            kv_tokens = parse_kv_cache_tokens(metrics.text) if metrics.status_code == 200 else 0
        except httpx.HTTPError:
            kv_tokens = 0
    except httpx.HTTPError as error:
        raise EngineError(
            f"cannot reach the vLLM server at {url} ({error!r}); {SERVE_HINT}"
        ) from error
    except (KeyError, IndexError, ValueError) as error:
        raise EngineError(
            f"{url} does not answer /v1/models as a vLLM server does: {error}"
        ) from error
    return ServerInfo(str(data["id"]), int(data.get("max_model_len") or 0), kv_tokens)


def probe(url: str, timeout_s: float = 10.0, api_key: str | None = None) -> ServerInfo:
    """Read the server's info now, from any thread (the CLI calls it before the server starts, so
    that an unreachable engine stops `serve` at once with what to do)."""

    async def read() -> ServerInfo:
        async with httpx.AsyncClient(
            timeout=timeout_s, headers=_auth(api_key), trust_env=False
        ) as client:
            return await read_server_info(client, url.rstrip("/"))

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:  # any caller's loop aside
        return pool.submit(asyncio.run, read()).result()


def _auth(api_key: str | None) -> dict[str, str]:
    return {} if api_key is None else {"Authorization": f"Bearer {api_key}"}


# --- the engine -----------------------------------------------------------------------------


class RemoteTokenStream(QueuedTokenStream):
    """A stream whose end, until its reader has taken it, gives way to a cancel."""

    def __init__(self, seq_id: int) -> None:
        super().__init__(seq_id)
        self._end_read = False

    async def __aiter__(self) -> AsyncIterator[int]:
        try:
            async for token in super().__aiter__():
                yield token
        except EngineError:
            self._end_read = True
            raise
        self._end_read = True

    def cancel_unread(self) -> None:
        """End the stream as cancelled, unless its reader has seen its end already."""
        if self._end_read:
            return
        if self.output.finish_reason is None:
            self.receive((), FinishReason.CANCELLED)
        else:  # ended meanwhile, but nobody has read that yet
            self.output.finish_reason = FinishReason.CANCELLED
            self._error = None


@dataclass(eq=False, kw_only=True)
class _Record(RequestRecord):
    affinity: str  # the routing key of its requests, and of its forks'
    engine_request_id: str | None = None  # the server's name for it, from its first chunk


class RemoteEngine(LoopThreadEngine):
    """The decoder of `checkpoint` on the vLLM server at `options.url`. The connection is made
    in the background at construction; `warm_up()` waits for it (EngineError where the server
    cannot be reached), and so does the first request."""

    def __init__(
        self,
        checkpoint: str | Path,
        options: RemoteOptions,
        transport: httpx.AsyncBaseTransport | None = None,  # tests: a fake server
    ) -> None:
        self.checkpoint = Path(checkpoint)
        self._transport = transport
        self.options = options
        self.url = options.url.rstrip("/")
        config = StepAudio2Config.from_file(self.checkpoint)
        self.vocab_size = int(config.text.vocab_size)
        self.hidden_size = int(config.text.hidden_size)
        self.max_context = options.max_context or config.context_tokens
        self._wire_dtype = None if options.wire_dtype is None else _WIRE_DTYPES[options.wire_dtype]
        self._capacity = EngineCapacity(options.max_sequences, 0, self.max_context)
        self._server: ServerInfo | None = None
        self._ids = itertools.count()
        self._records: SequenceRecords[_Record] = SequenceRecords(ENDED_SEQUENCES_KEPT)
        self._aborts: set[asyncio.Task[None]] = set()
        # Each stream and its caller's loop, so that a cancel ends it there at once.
        self._streams: weakref.WeakValueDictionary[int, RemoteTokenStream] = (
            weakref.WeakValueDictionary()
        )
        self._stream_loops: dict[int, asyncio.AbstractEventLoop] = {}
        self._server_healthy = True
        self._client: httpx.AsyncClient | None = None
        self._poller: asyncio.Task[None] | None = None
        self._start_loop("remote-engine")

    # -- what a server needs -------------------------------------------------------------------

    @property
    def capacity(self) -> EngineCapacity:
        return self._capacity

    @property
    def healthy(self) -> bool:
        if not self._loop_alive():
            return False
        if not self._started.done():
            return True  # connecting
        return self._started.exception() is None and self._server_healthy

    @property
    def server(self) -> ServerInfo | None:
        """What the server said of itself (None until connected)."""
        return self._server

    # -- the async interface (caller's loop) ---------------------------------------------------

    async def submit(self, prompt: Prompt, params: SamplingParams) -> TokenStream:
        check_context(prompt, self.max_context, self.vocab_size, self.hidden_size)
        audio_items(prompt)  # refuse here rows that are not at <audio_patch> positions
        stream, loop = self._new_stream()
        await self._call(self._start_request(stream, loop, prompt, params, None))
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
        if len(suffix):
            audio_items(suffix)  # refuse here rows that are not at <audio_patch> positions
        stream, loop = self._new_stream()
        await self._call(self._fork(seq_id, position, suffix, stream, loop, params))
        return stream

    async def cancel(self, seq_id: int) -> None:
        # The stream ends as cancelled here at once, whatever the server sent before it heard
        # of the cancel (the sequence runs on there meanwhile, in another process, and may even
        # have ended): what the reader has not taken yet ends cancelled.
        stream, loop = self._streams.get(seq_id), self._stream_loops.get(seq_id)
        if stream is not None and loop is not None:
            if loop is asyncio.get_running_loop():
                stream.cancel_unread()
            else:
                post(loop, stream.cancel_unread)
        await super().cancel(seq_id)

    def _new_stream(self) -> tuple[RemoteTokenStream, asyncio.AbstractEventLoop]:
        stream = RemoteTokenStream(next(self._ids))
        loop = asyncio.get_running_loop()
        self._streams[stream.seq_id] = stream
        self._stream_loops[stream.seq_id] = loop
        for gone in [i for i in self._stream_loops if i not in self._streams]:
            del self._stream_loops[gone]
        return stream, loop

    # -- the engine's loop ---------------------------------------------------------------------

    async def _start(self) -> None:
        timeout = httpx.Timeout(self.options.connect_timeout_s)
        client = httpx.AsyncClient(
            timeout=timeout,
            headers=_auth(self.options.api_key),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=32),
            trust_env=False,  # the tier is addressed directly, never through a proxy variable
            transport=self._transport,
        )
        self._client = client
        info = await read_server_info(client, self.url)
        if info.max_model_len:
            self.max_context = min(self.max_context, info.max_model_len)
        self._server = info
        self._capacity = EngineCapacity(
            self.options.max_sequences, info.kv_cache_tokens, self.max_context
        )
        self._poller = asyncio.create_task(self._poll_health())
        logger.info(
            "remote vLLM %s (%s): %d sequences here, %d cached tokens there, context %d",
            self.url,
            info.model,
            self.options.max_sequences,
            info.kv_cache_tokens,
            self.max_context,
        )

    async def _poll_health(self) -> None:
        assert self._client is not None
        while True:
            await asyncio.sleep(self.options.health_interval_s)
            try:
                response = await self._client.get(f"{self.url}/health")
                healthy = response.status_code == 200
            except httpx.HTTPError:
                healthy = False
            if healthy != self._server_healthy:
                logger.warning("remote vLLM %s %s", self.url, "healthy" if healthy else "unhealthy")
            self._server_healthy = healthy

    async def _fork(
        self,
        seq_id: int,
        position: int,
        suffix: Prompt,
        stream: QueuedTokenStream,
        loop: asyncio.AbstractEventLoop,
        params: SamplingParams,
    ) -> None:
        source, context = self._records.fork_context(seq_id, position, suffix)
        check_context(context, self.max_context, self.vocab_size)
        await self._start_request(stream, loop, context, params, source.affinity)

    async def _start_request(
        self,
        stream: QueuedTokenStream,
        loop: asyncio.AbstractEventLoop,
        prompt: Prompt,
        params: SamplingParams,
        affinity: str | None,
    ) -> None:
        """Send the request and wait for the server's answer to it (not its tokens): a refusal
        raises here, at the call."""
        await asyncio.wrap_future(self._started)
        check_context(prompt, self.max_context, self.vocab_size)  # the server's limit is known now
        assert self._client is not None and self._server is not None
        request_id = f"seq-{stream.seq_id}-{uuid.uuid4().hex[:12]}"
        max_tokens = min(params.max_tokens, self.max_context - len(prompt))
        body, first_audio = generate_body(
            prompt, params, max_tokens, request_id, self._server.model, self._wire_dtype
        )
        key = affinity if affinity is not None else affinity_key(prompt, first_audio)
        headers = {"Content-Type": "application/json"}
        if self.options.affinity_header is not None:
            ranks = self.options.affinity_ranks
            headers[self.options.affinity_header] = (
                key if ranks is None else str(int(key, 16) % ranks)
            )
        timeout = httpx.Timeout(self.options.connect_timeout_s, read=self.options.read_timeout_s)
        request = self._client.build_request(
            "POST", f"{self.url}{GENERATE_PATH}", content=body, headers=headers, timeout=timeout
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as error:
            self._server_healthy = False
            raise EngineError(f"the vLLM server at {self.url} failed: {error!r}") from error
        if response.status_code != 200:
            text = (await response.aread()).decode(errors="replace")
            await response.aclose()
            raise _refusal(response.status_code, _error_message(text))
        record = _Record(seq_id=stream.seq_id, prompt=prompt, request_id=request_id, affinity=key)
        self._records.start(record)
        record.task = asyncio.create_task(self._pump(record, stream, loop, response))

    async def _pump(
        self,
        record: _Record,
        stream: QueuedTokenStream,
        loop: asyncio.AbstractEventLoop,
        response: httpx.Response,
    ) -> None:
        """Read the server-sent events of one request into the caller's stream."""
        end: str | None = None
        lines = cast(AsyncGenerator[str, None], response.aiter_lines())  # an async generator
        try:
            async for line in lines:
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if "error" in chunk and "choices" not in chunk:
                    raise EngineError(f"the vLLM server failed: {_error_message(data)}")
                record.engine_request_id = record.engine_request_id or chunk.get("request_id")
                usage = chunk.get("usage") or {}
                cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
                for choice in chunk.get("choices") or ():
                    tokens = list(choice.get("token_ids") or ())
                    record.generated.extend(tokens)
                    reason = choice.get("finish_reason")
                    if reason is not None:
                        reason = FINISH_REASONS.get(reason, FinishReason.STOP)
                        if reason == FinishReason.ERROR:
                            raise EngineError(f"the vLLM server failed request {record.request_id}")
                    post(loop, stream.receive, tokens)
                    end = end or reason
                if cached is not None:
                    post(loop, stream.receive, (), None, None, int(cached))
                # Where the stream's bytes are already in, reading the next line does not yield:
                # let a cancel and the other streams in between chunks.
                await asyncio.sleep(0)
            if end is None:
                raise EngineError(f"the vLLM server ended request {record.request_id} early")
            post(loop, stream.receive, (), end)  # after the usage chunk: cached_tokens is set
        except asyncio.CancelledError:
            post(loop, stream.receive, (), FinishReason.CANCELLED)
            if end is None and self.options.abort_on_cancel:
                self._abort(record)
        except Exception as error:
            if isinstance(error, httpx.HTTPError):
                self._server_healthy = False
            logger.error("remote request %s failed: %r", record.request_id, error)
            post(loop, stream.receive, (), FinishReason.ERROR, error)
        finally:
            self._request_ended(record)
            await lines.aclose()
            await response.aclose()  # before the end of the body: the server aborts the request

    def _abort(self, record: _Record) -> None:
        """Tell the server to abort the request, in the background (closing the stream already
        does where nothing stands between us and vLLM)."""
        assert self._client is not None
        name = record.engine_request_id or f"{ENGINE_REQUEST_PREFIX}{record.request_id}"

        async def post() -> None:
            assert self._client is not None
            try:
                await self._client.post(f"{self.url}{ABORT_PATH}", json={"request_ids": [name]})
            except httpx.HTTPError as error:
                logger.debug("abort of %s not delivered: %r", name, error)

        task = asyncio.create_task(post())
        self._aborts.add(task)
        task.add_done_callback(self._aborts.discard)

    async def _stop(self) -> None:
        await self._cancel_requests()
        await asyncio.gather(*self._aborts, return_exceptions=True)
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        if not self._started.done():
            self._started.cancel()
        if self._client is not None:
            await self._client.aclose()


def _refusal(status: int, message: str) -> Exception:
    if status == 404:
        return EngineError(
            f"the vLLM server has no {GENERATE_PATH} ({message}): start it with "
            "--enable-scale-out (python -m streaming.engine.serve_vllm sets it)"
        )
    if status == 400:
        return ValueError(f"the vLLM server refused the request: {message}")
    return EngineError(f"the vLLM server answered {status}: {message}")


__all__ = [
    "RemoteEngine",
    "RemoteOptions",
    "ServerInfo",
    "audio_item",
    "audio_items",
    "generate_body",
    "msgpack",
    "probe",
]
