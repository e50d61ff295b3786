"""What every engine must do (`streaming/engine/base.py`), run on the torch engine, on the vLLM
engine (vLLM's CPU build, for real) and on the remote engine (the same build as a server of its
own, over HTTP on 127.0.0.1) over one random checkpoint directory, against transformers' own
forward on `inputs_embeds` (fp32, greedy)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator

import pytest
import torch

from streaming.engine.base import Engine, FinishReason, Prompt, SamplingParams, TokenStream
from streaming.engine.remote_engine import ENDED_SEQUENCES_KEPT as REMOTE_ENDED_SEQUENCES_KEPT
from streaming.engine.remote_engine import RemoteEngine
from streaming.engine.torch_engine import ENDED_SEQUENCES_KEPT, TorchEngine, input_embeddings
from streaming.engine.vllm_engine import CPU_BLOCK_SIZE
from streaming.engine.vllm_engine import ENDED_SEQUENCES_KEPT as VLLM_ENDED_SEQUENCES_KEPT
from streaming.model.checkpoint import LoadedModel

GREEDY = SamplingParams(temperature=0.0, max_tokens=12)
# As the vLLM engine of conftest.py is built (test folders are not packages: no import).
CONFORMANCE_CONTEXT = 256
CONFORMANCE_SEQUENCES = 8
FIRST_ID = 10  # prompts draw ids from here up to the learned vocabulary (no special tokens)
ENGINES = ("torch", "vllm", "remote")
# Positions of a reused prefix an engine may still compute: the torch engine prefills at most
# the source's last sampled token again; vLLM reuses whole KV blocks only, and the block that
# holds the cut is computed again (in this process or as a server).
REUSE_SLACK = {"torch": 1, "vllm": CPU_BLOCK_SIZE, "remote": CPU_BLOCK_SIZE}
CANCEL_CYCLES = 1000  # the count
# one warm-up serves every engine
assert ENDED_SEQUENCES_KEPT == VLLM_ENDED_SEQUENCES_KEPT == REMOTE_ENDED_SEQUENCES_KEPT
ROUND_GROWTH_LIMIT = 512 * 1024  # bytes of resident memory one quiet round may add (no leak)
SETTLE_S = 0.5  # the longest a cancelled sequence may take to leave the engine's books
SETTLE_POLL_S = 0.01


@pytest.fixture(params=ENGINES)
async def engine(request, conformance_model: LoadedModel) -> AsyncIterator[Engine]:
    if request.param in ("vllm", "remote"):
        shared = request.getfixturevalue(f"{request.param}_engine")
        assert shared.capacity.max_context == CONFORMANCE_CONTEXT
        yield shared
        await settle(shared)
        assert shared.active_sequences == 0, "a test left sequences running"
        return
    model = conformance_model.model
    torch_engine = TorchEngine(
        model.model,
        model.lm_head,
        max_slots=CONFORMANCE_SEQUENCES,
        max_seq_len=CONFORMANCE_CONTEXT,
        prefill_chunk=32,
    )
    yield torch_engine
    await torch_engine.close()


def kind(engine: Engine) -> str:
    if isinstance(engine, RemoteEngine):
        return "remote"
    return "torch" if isinstance(engine, TorchEngine) else "vllm"


def patch_id(model: LoadedModel) -> int:
    return model.special.audio_patch


def text_prompt(model: LoadedModel, length: int, seed: int) -> Prompt:
    generator = torch.Generator().manual_seed(seed)
    high = model.special.audio_patch - 10  # learned tokens only
    return Prompt(torch.randint(FIRST_ID, high, (length,), generator=generator).tolist())


def audio_prompt(model: LoadedModel, n_patches: int, seed: int = 1, lead: int = 3) -> Prompt:
    """Text, one run of audio rows (as one encoded chunk is), text."""
    generator = torch.Generator().manual_seed(seed)
    text = text_prompt(model, lead + 2, seed).token_ids
    ids = text[:lead] + [patch_id(model)] * n_patches + text[lead:]
    audio = torch.randn(n_patches, model.config.text.hidden_size, generator=generator)
    return Prompt(ids, audio, patch_id(model))


@torch.inference_mode()
def reference(model: LoadedModel, prompt: Prompt, steps: int) -> list[int]:
    """Greedy tokens by full recompute with transformers' Qwen2 forward on `inputs_embeds`."""
    embed_tokens = model.model.model.embed_tokens
    embeds = input_embeddings(prompt, embed_tokens)
    tokens: list[int] = []
    for _ in range(steps):
        token = int(model.model(embeds[None])[0, -1].argmax())
        tokens.append(token)
        embeds = torch.cat([embeds, embed_tokens(torch.tensor([token]))])
    return tokens


async def collect(stream: TokenStream) -> list[int]:
    return [token async for token in stream]


async def settle(engine: Engine) -> None:
    """Wait (briefly) until nothing runs: a cancel's last bookkeeping may trail its return."""
    for _ in range(int(SETTLE_S / SETTLE_POLL_S)):
        if engine.active_sequences == 0:
            return
        await asyncio.sleep(SETTLE_POLL_S)


async def generate_then_hold(engine: Engine, prompt: Prompt, count: int) -> TokenStream:
    """Submit, read `count` tokens, leave it running."""
    stream = await engine.submit(prompt, SamplingParams(max_tokens=CONFORMANCE_CONTEXT))
    read = 0
    async for _ in stream:
        read += 1
        if read == count:
            break
    return stream


# --- greedy equality ------------------------------------------------------------------------


async def test_single_text_prompt_matches_transformers(engine, conformance_model):
    prompt = text_prompt(conformance_model, 9, seed=0)
    stream = await engine.submit(prompt, GREEDY)
    tokens = await collect(stream)
    assert tokens == reference(conformance_model, prompt, GREEDY.max_tokens)
    assert stream.output.token_ids == tokens
    assert stream.output.finish_reason == FinishReason.LENGTH


async def test_audio_prompt_matches_transformers(engine, conformance_model):
    prompt = audio_prompt(conformance_model, 40)
    tokens = await collect(await engine.submit(prompt, GREEDY))
    assert tokens == reference(conformance_model, prompt, GREEDY.max_tokens)


async def test_a_conversation_with_several_audio_turns_matches_transformers(
    engine, conformance_model
):
    # Two turns of audio, the later shorter (a run must not be looked for inside another).
    first, second = audio_prompt(conformance_model, 40, seed=3), audio_prompt(conformance_model, 9)
    assert first.audio_embeds is not None and second.audio_embeds is not None
    prompt = Prompt(
        first.token_ids + second.token_ids,
        torch.cat([first.audio_embeds, second.audio_embeds]),
        patch_id(conformance_model),
    )
    tokens = await collect(await engine.submit(prompt, GREEDY))
    assert tokens == reference(conformance_model, prompt, GREEDY.max_tokens)


async def test_concurrent_prompts_of_different_lengths_match_transformers(
    engine, conformance_model
):
    prompts = [
        text_prompt(conformance_model, 5, seed=1),
        text_prompt(conformance_model, 70, seed=2),
        audio_prompt(conformance_model, 30, seed=3),
        text_prompt(conformance_model, 17, seed=4),
        audio_prompt(conformance_model, 12, seed=5, lead=20),
        text_prompt(conformance_model, 33, seed=6),
        text_prompt(conformance_model, 2, seed=7),
        text_prompt(conformance_model, 50, seed=8),
    ]
    streams = [await engine.submit(p, GREEDY) for p in prompts]
    outputs = await asyncio.gather(*(collect(s) for s in streams))
    for prompt, tokens in zip(prompts, outputs, strict=True):
        assert tokens == reference(conformance_model, prompt, GREEDY.max_tokens)
    assert engine.active_sequences == 0


# --- forks ----------------------------------------------------------------------------------


async def test_fork_equals_a_prefill_from_scratch_and_reuses_the_prefix(engine, conformance_model):
    source_prompt = audio_prompt(conformance_model, 40, lead=60)
    suffix = text_prompt(conformance_model, 3, seed=9).token_ids
    source = await generate_then_hold(engine, source_prompt, 8)
    generated = list(source.output.token_ids[:8])
    position = len(source_prompt) + 8
    fork = await engine.fork(source.seq_id, position, suffix, GREEDY)
    forked = await collect(fork)
    # The source goes on undisturbed: still running, or (a fast engine on a loaded machine) run
    # to its length meanwhile; never ended by the fork.
    assert source.output.finish_reason in (None, FinishReason.LENGTH)
    await engine.cancel(source.seq_id)
    scratch = Prompt(
        source_prompt.token_ids + generated + suffix,
        source_prompt.audio_embeds,
        source_prompt.audio_patch_id,
    )
    from_scratch = await collect(await engine.submit(scratch, GREEDY))
    assert forked == from_scratch == reference(conformance_model, scratch, GREEDY.max_tokens)
    assert fork.output.cached_tokens is not None
    assert fork.output.cached_tokens >= position - REUSE_SLACK[kind(engine)]


async def test_fork_inside_the_prompt(engine, conformance_model):
    prompt = text_prompt(conformance_model, 90, seed=10)
    source = await generate_then_hold(engine, prompt, 1)
    fork = await engine.fork(source.seq_id, 70, [30, 31], GREEDY)
    forked = await collect(fork)
    await engine.cancel(source.seq_id)
    assert forked == reference(conformance_model, Prompt(prompt.token_ids[:70] + [30, 31]), 12)
    assert fork.output.cached_tokens >= 70 - REUSE_SLACK[kind(engine)]


async def test_fork_with_an_audio_suffix_continues_a_listening_sequence(engine, conformance_model):
    whole = audio_prompt(conformance_model, 60, lead=40)
    cut = 70  # inside the audio run: rows on both sides of the cut
    rows = whole.token_ids[:cut].count(patch_id(conformance_model))
    assert whole.audio_embeds is not None
    head = Prompt(whole.token_ids[:cut], whole.audio_embeds[:rows], whole.audio_patch_id)
    rest = Prompt(whole.token_ids[cut:], whole.audio_embeds[rows:], whole.audio_patch_id)
    listening = await engine.submit(head, SamplingParams(max_tokens=1))
    await collect(listening)
    forked = await collect(await engine.fork(listening.seq_id, len(head), rest, GREEDY))
    assert forked == reference(conformance_model, whole, GREEDY.max_tokens)


async def test_an_ended_or_cancelled_sequence_can_still_be_forked(engine, conformance_model):
    prompt = text_prompt(conformance_model, 10, seed=13)
    first = await engine.submit(prompt, SamplingParams(max_tokens=5))
    head = await collect(first)
    rest = await collect(await engine.fork(first.seq_id, len(prompt) + 5, [], GREEDY))
    assert head + rest == reference(conformance_model, prompt, 5 + GREEDY.max_tokens)
    cancelled = await generate_then_hold(engine, prompt, 2)
    await engine.cancel(cancelled.seq_id)
    again = await collect(await engine.fork(cancelled.seq_id, len(prompt) + 2, [], GREEDY))
    assert again == reference(conformance_model, prompt, 2 + GREEDY.max_tokens)[2:]


async def test_fork_of_an_unknown_sequence_or_past_its_end_fails(engine, conformance_model):
    # At most 5 + 20 tokens however fast the engine runs ahead of the reader (a remote engine
    # has read far ahead by the time the fork is asked for).
    source = await engine.submit(
        text_prompt(conformance_model, 5, seed=8), SamplingParams(max_tokens=20)
    )
    async for _ in source:
        break
    with pytest.raises(ValueError, match="has"):
        await engine.fork(source.seq_id, 200, [1], GREEDY)
    with pytest.raises(KeyError):
        await engine.fork(12345678, 2, [1], GREEDY)
    await engine.cancel(source.seq_id)


# --- cancel ---------------------------------------------------------------------------------


async def test_cancel_ends_the_stream_and_is_idempotent(engine, conformance_model):
    stream = await generate_then_hold(engine, text_prompt(conformance_model, 5, seed=9), 1)
    await engine.cancel(stream.seq_id)
    await engine.cancel(stream.seq_id)
    rest = await collect(stream)  # what was already queued, then the end
    assert stream.output.finish_reason == FinishReason.CANCELLED
    assert len(stream.output.token_ids) == 1 + len(rest)
    await settle(engine)
    assert engine.active_sequences == 0


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def live_tensors() -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if type(obj) in (torch.Tensor, torch.nn.Parameter))


async def test_a_thousand_submit_cancel_cycles_leave_memory_flat_and_nothing_running(
    engine, conformance_model
):
    params = SamplingParams(max_tokens=CONFORMANCE_CONTEXT)
    prompts = [text_prompt(conformance_model, 8 + i % 5, seed=i) for i in range(5)]

    async def cycles(n: int) -> None:
        for i in range(n):
            stream = await engine.submit(prompts[i % 5], params)
            if i % 2:  # half of them are cancelled while decoding, half maybe before
                async for _ in stream:
                    break
            await engine.cancel(stream.seq_id)
            await collect(stream)
            assert stream.output.finish_reason == FinishReason.CANCELLED

    # Warm up allocator pools, caches, and the engine's records of ended sequences (bounded:
    # once full, each new one pushes the oldest out).
    await cycles(ENDED_SEQUENCES_KEPT + 100)
    tensors_before = live_tensors()
    growths = []
    rounds = 3
    for _ in range(rounds):
        rss_before = resident_bytes()
        await cycles(CANCEL_CYCLES // rounds)
        growths.append(resident_bytes() - rss_before)
    await settle(engine)
    assert engine.active_sequences == 0
    assert live_tensors() - tensors_before <= 0
    # Resident memory moves in allocator steps; a leak grows in every round.
    assert min(growths) < ROUND_GROWTH_LIMIT, f"resident memory grew by {growths} bytes"


# --- stopping, lengths, seeds ---------------------------------------------------------------


async def test_stop_id_ends_the_stream_with_the_stop_token_last(engine, conformance_model):
    prompt = text_prompt(conformance_model, 6, seed=4)
    expected = reference(conformance_model, prompt, 6)
    stop = expected[3]
    cut = expected.index(stop)
    stream = await engine.submit(prompt, SamplingParams(max_tokens=50, stop_ids=(stop,)))
    assert await collect(stream) == expected[: cut + 1]
    assert stream.output.finish_reason == FinishReason.STOP


async def test_max_tokens_and_a_full_context_end_with_length(engine, conformance_model):
    stream = await engine.submit(text_prompt(conformance_model, 7, seed=5), GREEDY)
    assert len(await collect(stream)) == GREEDY.max_tokens
    assert stream.output.finish_reason == FinishReason.LENGTH
    long = text_prompt(conformance_model, CONFORMANCE_CONTEXT - 4, seed=6)
    full = await engine.submit(long, SamplingParams(max_tokens=100))
    # Prompt and generated tokens fill the context exactly.
    assert len(await collect(full)) == 4
    assert full.output.finish_reason == FinishReason.LENGTH


async def test_seeded_sampling_repeats_and_seeds_differ(engine, conformance_model):
    prompt = text_prompt(conformance_model, 8, seed=6)

    def params(seed: int) -> SamplingParams:
        return SamplingParams(
            temperature=1.0, top_p=0.95, repetition_penalty=1.1, max_tokens=16, seed=seed
        )

    streams = [await engine.submit(prompt, params(s)) for s in (1, 1, 2)]
    first, again, other = await asyncio.gather(*(collect(s) for s in streams))
    assert first == again
    assert first != other


# --- bad input ------------------------------------------------------------------------------


async def test_bad_prompts_are_refused_with_a_clear_error(engine, conformance_model):
    too_long = text_prompt(conformance_model, CONFORMANCE_CONTEXT, seed=1)
    with pytest.raises(ValueError, match="context of 256 tokens"):
        await engine.submit(too_long, GREEDY)
    outside = Prompt([FIRST_ID, conformance_model.config.text.vocab_size])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        await engine.submit(outside, GREEDY)
    mismatched = audio_prompt(conformance_model, 3)
    mismatched.token_ids.append(patch_id(conformance_model))
    with pytest.raises(ValueError, match="audio_patch"):
        await engine.submit(mismatched, GREEDY)
    too_wide = audio_prompt(conformance_model, 3)
    assert too_wide.audio_embeds is not None
    too_wide.audio_embeds = torch.zeros(3, conformance_model.config.text.hidden_size + 1)
    with pytest.raises(ValueError, match="wide"):
        await engine.submit(too_wide, GREEDY)
    # Nothing of that reached the model: the engine serves on.
    assert engine.healthy
    assert len(await collect(await engine.submit(text_prompt(conformance_model, 4, 0), GREEDY)))


async def test_capacity_and_health_are_reported(engine):
    capacity = engine.capacity
    assert capacity.max_sequences == CONFORMANCE_SEQUENCES
    assert capacity.max_context == CONFORMANCE_CONTEXT
    assert capacity.max_cached_tokens >= CONFORMANCE_CONTEXT
    assert engine.healthy
