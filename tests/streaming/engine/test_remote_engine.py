"""The remote engine's own parts: its audio items against vLLM's own serializer, the request it
sends and how it reads the answer (a fake server), the checks it makes before any round trip,
an unreachable server, and, on the session's real vLLM server, that a cancel aborts the request
there too. What every engine must do is in test_conformance.py, the remote engine included."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from pathlib import Path

import httpx
import msgspec
import pytest
import torch

from benchmarks.server_process import free_port
from streaming.engine.base import EngineError, FinishReason, Prompt, SamplingParams
from streaming.engine.remote_engine import (
    GENERATE_PATH,
    RemoteEngine,
    RemoteOptions,
    audio_item,
    audio_items,
    msgpack,
    parse_kv_cache_tokens,
    probe,
)
from streaming.engine.vllm_plugin import MAX_ROWS_PER_ITEM
from streaming.model.config import StepAudio2Config

PATCH = 7
MODEL_LEN = 128
CANCEL_SETTLE_S = 10.0  # vLLM aborts in ~60 ms here; a busy machine gets slack
CANCEL_POLL_S = 0.05


def test_an_audio_item_is_byte_for_byte_what_vllm_itself_sends() -> None:
    from vllm.entrypoints.scale_out.token_in_token_out.mm_serde import (
        decode_mm_kwargs_item,
        encode_mm_kwargs_item,
    )
    from vllm.multimodal.inputs import (
        MultiModalFieldConfig,
        MultiModalFieldElem,
        MultiModalKwargsItem,
    )

    for dtype in (torch.float32, torch.bfloat16):
        for count in (1, 40, MAX_ROWS_PER_ITEM):
            rows = torch.randn(count, 64).to(dtype)
            field = MultiModalFieldConfig.batched("audio").field
            ours, digest = audio_item(rows)
            theirs = MultiModalKwargsItem({"audio_embeds": MultiModalFieldElem(rows, field)})
            assert ours == encode_mm_kwargs_item(theirs)
            assert torch.equal(decode_mm_kwargs_item(ours)["audio_embeds"].data, rows)
            assert digest == audio_item(rows.clone())[1] != audio_item(rows + 1)[1]


def test_msgpack_encodes_what_msgspec_decodes() -> None:
    values = [None, True, 0, 127, 128, 65_536, 2**40, -1, -33, -(2**40), "", "x" * 40]
    values += ["y" * 70_000, list(range(20)), {str(i): i for i in range(20)}, list(range(70_000))]
    for value in values:
        assert msgspec.msgpack.decode(msgpack(value)) == value


def test_each_audio_run_is_cut_into_items_of_one_chunk_at_most() -> None:
    long = MAX_ROWS_PER_ITEM + 5
    ids = [1, *([PATCH] * long), 2, PATCH, PATCH, 3, PATCH]  # a generated patch id last: text
    positions = [i for i, t in enumerate(ids[:-1]) if t == PATCH]
    rows = torch.arange(len(positions), dtype=torch.float32)[:, None].expand(-1, 4)
    items = audio_items(Prompt(ids, rows, PATCH, positions))
    assert [(offset, len(r)) for offset, r in items] == [
        (1, MAX_ROWS_PER_ITEM),
        (1 + MAX_ROWS_PER_ITEM, 5),
        (long + 2, 2),
    ]
    assert torch.equal(torch.cat([r for _, r in items]), rows)
    with pytest.raises(ValueError, match="<audio_patch> positions"):
        audio_items(Prompt([1, 2, PATCH], torch.ones(1, 4), PATCH, audio_positions=[1]))


def test_the_kv_cache_size_is_read_from_vllms_metrics() -> None:
    line = 'vllm:cache_config_info{block_size="32",kv_cache_size_tokens="%s",num_gpu_blocks="10"} 1'
    assert parse_kv_cache_tokens(line % "174752") == 174_752
    assert parse_kv_cache_tokens(line % "None") == 320
    assert parse_kv_cache_tokens("vllm:num_requests_running 0") == 0


# --- a fake vLLM server ----------------------------------------------------------------------


class FakeVllm:
    """Answers /health, /v1/models, /metrics and /inference/v1/generate (with `tokens` and a
    usage chunk) and records every generate request."""

    def __init__(self, tokens: list[int], cached: int = 0, status: int = 200) -> None:
        self.tokens, self.cached, self.status = tokens, cached, status
        self.generated: list[httpx.Request] = []

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/health":
            return httpx.Response(200)
        if path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "ckpt", "max_model_len": MODEL_LEN}]})
        if path == "/metrics":
            return httpx.Response(200, text='vllm:cache_config_info{kv_cache_size_tokens="4096"} 1')
        assert path == GENERATE_PATH, path
        self.generated.append(request)
        if self.status != 200:
            return httpx.Response(self.status, json={"error": {"message": "no such thing"}})
        body = json.loads(request.content)
        tokens = self.tokens[: body["sampling_params"]["max_tokens"]]
        done = len(tokens) < len(self.tokens)
        chunks = [{"request_id": "r", "choices": [{"token_ids": [t]}]} for t in tokens]
        chunks[-1]["choices"][0]["finish_reason"] = "length" if done else "stop"
        usage = {"prompt_tokens": 3, "prompt_tokens_details": {"cached_tokens": self.cached}}
        chunks.append({"request_id": "r", "choices": [], "usage": usage})
        text = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
        return httpx.Response(200, text=text, headers={"content-type": "text/event-stream"})


async def test_wire_dtype_and_api_key_reach_the_request(tiny_checkpoint: Path, hidden: int) -> None:
    server = FakeVllm([5, 9])
    engine = fake_engine(tiny_checkpoint, server, wire_dtype="bfloat16", api_key="sk-tier")
    await engine.warm_up()
    rows = torch.randn(2, hidden)
    stream = await engine.submit(Prompt([1, PATCH, PATCH, 2], rows, PATCH), SamplingParams())
    assert [t async for t in stream] == [5, 9]
    request = server.generated[-1]
    assert request.headers["Authorization"] == "Bearer sk-tier"
    sent = json.loads(request.content)["features"]["kwargs_data"]["audio"]
    assert sent == [audio_item(rows.to(torch.bfloat16))[0]]  # half the bytes of float32 rows
    await engine.close()
    with pytest.raises(ValueError, match="wire_dtype"):
        RemoteOptions("http://fake:1", wire_dtype="int8")


@pytest.fixture
def hidden(tiny_checkpoint: Path) -> int:
    return int(StepAudio2Config.from_file(tiny_checkpoint).text.hidden_size)


def fake_engine(checkpoint: Path, server: FakeVllm, **settings: object) -> RemoteEngine:
    options = RemoteOptions("http://fake:1", **settings)  # type: ignore[arg-type]
    return RemoteEngine(checkpoint, options, transport=server.transport())


async def test_a_request_carries_ids_audio_items_and_our_sampling(
    tiny_checkpoint: Path, hidden: int
) -> None:
    server = FakeVllm([5, 6, 9], cached=64)
    engine = fake_engine(tiny_checkpoint, server, affinity_header="X-Session-ID")
    await engine.warm_up()
    assert engine.capacity.max_context == MODEL_LEN  # the server's, below the checkpoint's
    assert engine.capacity.max_cached_tokens == 4096
    rows = torch.randn(3, hidden)
    prompt = Prompt([1, PATCH, PATCH, PATCH, 2], rows, PATCH)
    params = SamplingParams(temperature=0.7, max_tokens=500, stop_ids=(9,), seed=3)
    stream = await engine.submit(prompt, params)
    assert [t async for t in stream] == [5, 6, 9]
    assert stream.output.finish_reason == FinishReason.STOP
    assert stream.output.cached_tokens == 64
    request = server.generated[-1]
    body = json.loads(request.content)
    assert body["token_ids"] == prompt.token_ids and body["stream"] is True
    assert body["sampling_params"] == {
        "temperature": 0.7,
        "top_p": 1.0,
        "repetition_penalty": 1.0,
        "max_tokens": MODEL_LEN - len(prompt),  # capped: the context never passes the limit
        "stop_token_ids": [9],
        "ignore_eos": True,
        "detokenize": False,
        "seed": 3,
    }
    features = body["features"]
    assert features["mm_placeholders"] == {"audio": [{"offset": 1, "length": 3}]}
    assert features["kwargs_data"]["audio"] == [audio_item(rows)[0]]
    key = request.headers["X-Session-ID"]
    # A fork has its source's key; greedy sends no seed.
    fork = await engine.fork(stream.seq_id, 4, [3], SamplingParams(max_tokens=2, seed=3))
    assert [t async for t in fork] == [5, 6]
    assert fork.output.finish_reason == FinishReason.LENGTH
    forked = server.generated[-1]
    assert forked.headers["X-Session-ID"] == key
    assert json.loads(forked.content)["token_ids"] == [1, PATCH, PATCH, PATCH, 3]
    assert "seed" not in json.loads(forked.content)["sampling_params"]
    # Another conversation: another key.
    other = await engine.submit(Prompt([1, PATCH, 2], torch.randn(1, hidden), PATCH), params)
    assert [t async for t in other] == [5, 6, 9]
    assert server.generated[-1].headers["X-Session-ID"] != key
    await engine.close()


async def test_a_data_parallel_rank_header_takes_a_rank(tiny_checkpoint: Path) -> None:
    server = FakeVllm([5])
    engine = fake_engine(
        tiny_checkpoint, server, affinity_header="X-data-parallel-rank", affinity_ranks=4
    )
    for first in range(10, 20):
        [_ async for _ in await engine.submit(Prompt([first, 2]), SamplingParams(max_tokens=1))]
    ranks = {int(r.headers["X-data-parallel-rank"]) for r in server.generated}
    assert ranks <= {0, 1, 2, 3} and len(ranks) > 1
    await engine.close()


async def test_bad_input_is_refused_before_any_round_trip(tiny_checkpoint: Path, hidden: int):
    server = FakeVllm([5])
    engine = fake_engine(tiny_checkpoint, server, max_context=64)
    bad: list[tuple[Callable[[], Prompt], str]] = [
        (lambda: Prompt(list(range(1, 65))), "context of 64 tokens"),
        (lambda: Prompt([1, 10**6]), "outside the vocabulary"),
        (lambda: Prompt([1, PATCH, PATCH], torch.ones(1, hidden), PATCH), "audio_patch"),
        (lambda: Prompt([1, PATCH], torch.ones(1, hidden + 1), PATCH), "wide"),
        (lambda: Prompt([1, 2], torch.ones(1, hidden), PATCH, [0]), "<audio_patch> positions"),
    ]
    for make, message in bad:
        with pytest.raises(ValueError, match=re.escape(message)):
            await engine.submit(make(), SamplingParams())
    first = await engine.submit(Prompt([1, 2]), SamplingParams(max_tokens=1))
    [_ async for _ in first]
    with pytest.raises(ValueError, match="outside the vocabulary"):
        await engine.fork(first.seq_id, 2, [10**6], SamplingParams())
    assert len(server.generated) == 1  # only the good one went out
    await engine.close()


async def test_the_servers_refusals_say_what_to_do(tiny_checkpoint: Path) -> None:
    engine = fake_engine(tiny_checkpoint, FakeVllm([5], status=404))
    with pytest.raises(EngineError, match="--enable-scale-out"):
        await engine.submit(Prompt([1, 2]), SamplingParams())
    await engine.close()
    engine = fake_engine(tiny_checkpoint, FakeVllm([5], status=400))
    with pytest.raises(ValueError, match="refused the request: no such thing"):
        await engine.submit(Prompt([1, 2]), SamplingParams())
    assert engine.healthy
    await engine.close()


async def test_an_unreachable_server_is_an_engine_error_with_what_to_do(
    tiny_checkpoint: Path,
) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(EngineError, match="cannot reach the vLLM server.*serve_vllm"):
        probe(url, timeout_s=5)
    engine = RemoteEngine(tiny_checkpoint, RemoteOptions(url, connect_timeout_s=5))
    with pytest.raises(EngineError, match="cannot reach"):
        await engine.warm_up()
    assert not engine.healthy
    await engine.close()


# --- on the session's real vLLM server ------------------------------------------------------


def server_metric(url: str, name: str) -> float:
    """A vLLM counter or gauge, summed over its labels."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{")
    )


async def test_a_cancel_aborts_the_request_on_the_server(
    conformance_checkpoint: Path, vllm_server: str
) -> None:
    # The server's whole context (the conformance engine is held to a part of it): ~1 s of
    # decoding to cancel it in, were it not aborted.
    engine = RemoteEngine(conformance_checkpoint, RemoteOptions(vllm_server))
    await engine.warm_up()
    tokens_before = server_metric(vllm_server, "vllm:generation_tokens_total")
    prompt = Prompt(list(range(10, 20)))
    stream = await engine.submit(prompt, SamplingParams(max_tokens=engine.capacity.max_context))
    async for _ in stream:
        break
    await engine.cancel(stream.seq_id)
    assert stream.output.finish_reason == FinishReason.CANCELLED
    for _ in range(int(CANCEL_SETTLE_S / CANCEL_POLL_S)):
        if not server_metric(vllm_server, "vllm:num_requests_running"):
            break
        await asyncio.sleep(CANCEL_POLL_S)
    assert server_metric(vllm_server, "vllm:num_requests_running") == 0
    # It ended well before its length: aborted.
    whole = engine.capacity.max_context - len(prompt)
    generated = server_metric(vllm_server, "vllm:generation_tokens_total") - tokens_before
    assert 1 <= generated < whole
    assert engine.server is not None and engine.server.max_model_len == engine.capacity.max_context
    await engine.close()
