"""The torch engine against transformers' own forward, on a tiny random model (fp32, CPU)."""

from __future__ import annotations

import asyncio
import gc

import pytest
import torch
from transformers import Qwen2ForCausalLM

from streaming.engine.base import FinishReason, Prompt, SamplingParams
from streaming.engine.torch_engine import EngineError, TorchEngine, input_embeddings

AUDIO_PATCH_ID = 7
VOCAB = 256  # as the tiny model in conftest.py
GREEDY = SamplingParams(temperature=0.0, max_tokens=12)


def make_engine(model: Qwen2ForCausalLM, **kwargs: object) -> TorchEngine:
    options: dict = {"max_slots": 4, "max_seq_len": 128, "prefill_chunk": 16} | kwargs
    return TorchEngine(model.model, model.lm_head, **options)


def text_prompt(length: int, seed: int) -> Prompt:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, VOCAB, (length,), generator=generator).tolist()
    return Prompt(token_ids=ids)


def audio_prompt(n_patches: int, hidden: int) -> Prompt:
    generator = torch.Generator().manual_seed(1)
    ids = [11, 12, 13] + [AUDIO_PATCH_ID] * n_patches + [14, 15]
    audio = torch.randn(n_patches, hidden, generator=generator)
    return Prompt(token_ids=ids, audio_embeds=audio, audio_patch_id=AUDIO_PATCH_ID)


@pytest.fixture
def reference(tiny_model, greedy_reference):
    """Greedy tokens of transformers' own forward for a prompt."""

    def run(model: Qwen2ForCausalLM, prompt: Prompt, steps: int) -> list[int]:
        with torch.inference_mode():
            embeds = input_embeddings(prompt, model.model.embed_tokens)
        return greedy_reference(model, embeds, steps)

    return run


async def collect(stream) -> list[int]:
    return [token async for token in stream]


async def test_single_greedy_matches_transformers(tiny_model, reference):
    prompt = text_prompt(9, seed=0)
    async with make_engine(tiny_model) as engine:
        stream = await engine.submit(prompt, GREEDY)
        tokens = await collect(stream)
    assert tokens == reference(tiny_model, prompt, GREEDY.max_tokens)
    assert stream.output.token_ids == tokens
    assert stream.output.finish_reason == FinishReason.LENGTH


async def test_concurrent_sequences_of_different_lengths_match_transformers(tiny_model, reference):
    hidden = tiny_model.config.hidden_size
    # 40 tokens with 16-token chunks: its prefill interleaves with the others' decode steps.
    prompts = [
        text_prompt(5, seed=1),
        text_prompt(40, seed=2),
        audio_prompt(20, hidden),
        text_prompt(17, seed=3),
    ]
    async with make_engine(tiny_model) as engine:
        streams = [await engine.submit(p, GREEDY) for p in prompts]
        outputs = await asyncio.gather(*(collect(s) for s in streams))
        assert engine.free_slots == engine.max_slots
    for prompt, tokens in zip(prompts, outputs, strict=True):
        assert tokens == reference(tiny_model, prompt, GREEDY.max_tokens)


async def test_more_sequences_than_slots_wait_for_a_free_slot(tiny_model, reference):
    prompts = [text_prompt(4 + i, seed=10 + i) for i in range(5)]
    async with make_engine(tiny_model, max_slots=2) as engine:
        streams = [await engine.submit(p, SamplingParams(max_tokens=5)) for p in prompts]
        outputs = await asyncio.gather(*(collect(s) for s in streams))
    for prompt, tokens in zip(prompts, outputs, strict=True):
        assert tokens == reference(tiny_model, prompt, 5)


async def test_batch_of_non_consecutive_slots_matches_transformers(tiny_model, reference):
    prompts = [text_prompt(6, seed=20), text_prompt(9, seed=21), text_prompt(7, seed=22)]
    params = SamplingParams(max_tokens=16)
    async with make_engine(tiny_model) as engine:
        first, middle, last = [await engine.submit(p, params) for p in prompts]
        async for _ in middle:
            break
        await engine.cancel(middle.seq_id)  # slots 0 and 2 decode on, with a hole between
        outputs = await asyncio.gather(collect(first), collect(last))
    assert outputs[0] == reference(tiny_model, prompts[0], 16)
    assert outputs[1] == reference(tiny_model, prompts[2], 16)


async def test_audio_patches_must_match_embeddings(tiny_model):
    prompt = audio_prompt(3, tiny_model.config.hidden_size)
    prompt.token_ids.append(AUDIO_PATCH_ID)
    async with make_engine(tiny_model) as engine:
        with pytest.raises(ValueError, match="audio_patch"):
            await engine.submit(prompt, GREEDY)


async def test_a_prompt_that_fails_in_the_worker_ends_its_stream_with_an_error(tiny_model):
    prompt = audio_prompt(3, tiny_model.config.hidden_size)
    assert prompt.audio_embeds is not None
    # Rows without data (the meta device) pass every check at submit, and cannot be copied.
    prompt.audio_embeds = torch.empty(prompt.audio_embeds.shape, device="meta")
    async with make_engine(tiny_model) as engine:
        stream = await engine.submit(prompt, GREEDY)
        with pytest.raises(EngineError):
            await collect(stream)
        assert stream.output.finish_reason == FinishReason.ERROR
        # The engine goes on serving others.
        assert len(await collect(await engine.submit(text_prompt(4, seed=0), GREEDY))) == 12


async def test_stop_id_ends_the_stream_with_the_stop_token_last(tiny_model, reference):
    prompt = text_prompt(6, seed=4)
    expected = reference(tiny_model, prompt, 6)
    stop = expected[3]
    cut = expected.index(stop)  # the first occurrence ends the stream
    async with make_engine(tiny_model) as engine:
        stream = await engine.submit(prompt, SamplingParams(max_tokens=50, stop_ids=(stop,)))
        tokens = await collect(stream)
    assert tokens == expected[: cut + 1]
    assert stream.output.finish_reason == FinishReason.STOP


async def test_cache_full_ends_with_length(tiny_model):
    async with make_engine(tiny_model, max_seq_len=20) as engine:
        stream = await engine.submit(text_prompt(15, seed=5), SamplingParams(max_tokens=100))
        tokens = await collect(stream)
    # Prompt and generated tokens fill the 20 positions: the context is full.
    assert len(tokens) == 5
    assert stream.output.finish_reason == FinishReason.LENGTH


async def test_seeded_sampling_repeats_and_seeds_differ(tiny_model):
    prompt = text_prompt(8, seed=6)

    def params(seed: int) -> SamplingParams:
        return SamplingParams(
            temperature=1.0, top_p=0.95, repetition_penalty=1.1, max_tokens=16, seed=seed
        )

    async with make_engine(tiny_model) as engine:
        streams = [await engine.submit(prompt, params(s)) for s in (1, 1, 2)]
        first, again, other = await asyncio.gather(*(collect(s) for s in streams))
    assert first == again
    assert first != other


async def test_fork_equals_the_same_context_prefilled_from_scratch(tiny_model, reference):
    hidden = tiny_model.config.hidden_size
    source_prompt = audio_prompt(10, hidden)
    suffix = [21, 22, 23]
    async with make_engine(tiny_model) as engine:
        source = await engine.submit(source_prompt, SamplingParams(max_tokens=100))
        generated = []
        async for token in source:
            generated.append(token)
            if len(generated) == 8:
                break
        position = len(source_prompt) + 8
        before = engine.prefilled_tokens
        fork = await engine.fork(source.seq_id, position, suffix, GREEDY)
        forked = await collect(fork)
        fork_prefill = engine.prefilled_tokens - before
        # The source goes on undisturbed while the fork runs.
        assert source.output.finish_reason is None
        await engine.cancel(source.seq_id)

        scratch = Prompt(
            token_ids=source_prompt.token_ids + generated + suffix,
            audio_embeds=source_prompt.audio_embeds,
            audio_patch_id=AUDIO_PATCH_ID,
        )
        from_scratch = await collect(await engine.submit(scratch, GREEDY))
    assert forked == from_scratch == reference(tiny_model, scratch, GREEDY.max_tokens)
    # Only the suffix and at most the source's last, not yet fed, token were prefilled.
    assert fork_prefill <= len(suffix) + 1


async def test_fork_inside_the_prompt(tiny_model, reference):
    prompt = text_prompt(30, seed=7)
    async with make_engine(tiny_model) as engine:
        source = await engine.submit(prompt, SamplingParams(max_tokens=100))
        async for _ in source:
            break
        before = engine.prefilled_tokens
        fork = await engine.fork(source.seq_id, 20, [30, 31], GREEDY)
        forked = await collect(fork)
        assert engine.prefilled_tokens - before == 2
        await engine.cancel(source.seq_id)
    assert forked == reference(tiny_model, Prompt(prompt.token_ids[:20] + [30, 31]), 12)


def split_audio_prompt(prompt: Prompt, cut: int) -> tuple[Prompt, Prompt]:
    """`prompt` as a head of `cut` ids and the rest, each with its own audio rows."""
    assert prompt.audio_embeds is not None
    head_rows = prompt.token_ids[:cut].count(AUDIO_PATCH_ID)
    head = Prompt(prompt.token_ids[:cut], prompt.audio_embeds[:head_rows], AUDIO_PATCH_ID)
    rest = Prompt(prompt.token_ids[cut:], prompt.audio_embeds[head_rows:], AUDIO_PATCH_ID)
    return head, rest


async def test_fork_with_an_audio_suffix_equals_the_whole_context_from_scratch(
    tiny_model, reference
):
    hidden = tiny_model.config.hidden_size
    whole = audio_prompt(30, hidden)
    head, rest = split_audio_prompt(whole, cut=14)  # audio on both sides of the cut
    async with make_engine(tiny_model) as engine:
        # A "listening" sequence: the head only, one token that nobody reads.
        listening = await engine.submit(head, SamplingParams(max_tokens=1))
        await collect(listening)
        before = engine.prefilled_tokens
        forked = await collect(await engine.fork(listening.seq_id, len(head), rest, GREEDY))
        fork_prefill = engine.prefilled_tokens - before
        from_scratch = await collect(await engine.submit(whole, GREEDY))
    assert forked == from_scratch == reference(tiny_model, whole, GREEDY.max_tokens)
    assert fork_prefill == len(rest)  # the head's keys/values were reused


async def test_fork_with_a_bad_audio_suffix_fails(tiny_model):
    hidden = tiny_model.config.hidden_size
    head, rest = split_audio_prompt(audio_prompt(10, hidden), cut=8)
    async with make_engine(tiny_model) as engine:
        source = await engine.submit(head, SamplingParams(max_tokens=1))
        await collect(source)
        with pytest.raises(ValueError, match="audio_patch"):  # rows and patches disagree
            await engine.fork(
                source.seq_id,
                len(head),
                Prompt(rest.token_ids + [AUDIO_PATCH_ID], rest.audio_embeds, AUDIO_PATCH_ID),
                GREEDY,
            )
        too_wide = Prompt(
            rest.token_ids, torch.zeros(len(rest.audio_embeds), hidden + 1), AUDIO_PATCH_ID
        )
        with pytest.raises(ValueError, match="wide"):  # refused before any work
            await engine.fork(source.seq_id, len(head), too_wide, GREEDY)


async def test_an_ended_sequence_can_be_continued_without_a_prefill(tiny_model, reference):
    prompt = text_prompt(10, seed=13)
    async with make_engine(tiny_model) as engine:
        first = await engine.submit(prompt, SamplingParams(max_tokens=5))
        head = await collect(first)
        before = engine.prefilled_tokens
        rest = await collect(await engine.fork(first.seq_id, len(prompt) + 5, [], GREEDY))
        # Only the last sampled token, which was never fed, is prefilled.
        assert engine.prefilled_tokens - before == 1
    assert head + rest == reference(tiny_model, prompt, 5 + GREEDY.max_tokens)


async def test_fork_waiting_for_a_slot_takes_over_its_ended_source_slot(tiny_model, reference):
    prompt = text_prompt(12, seed=11)
    async with make_engine(tiny_model, max_slots=1) as engine:
        blocker = await engine.submit(text_prompt(5, seed=12), SamplingParams(max_tokens=10_000))
        async for _ in blocker:  # it holds the only slot
            break
        source = await engine.submit(prompt, SamplingParams(max_tokens=3))
        # The source waits for the only slot, and the fork waits for the source to end.
        fork = await engine.fork(source.seq_id, 8, [40, 41], GREEDY)
        await engine.cancel(blocker.seq_id)
        assert len(await collect(source)) == 3
        forked = await collect(fork)
        # Prefilled: the blocker's prompt, the source's, and the fork's suffix only.
        assert engine.prefilled_tokens == 5 + len(prompt) + 2
    assert forked == reference(tiny_model, Prompt(prompt.token_ids[:8] + [40, 41]), 12)


async def test_fork_whose_source_slot_was_reused_prefills_everything(tiny_model, reference):
    prompt = text_prompt(12, seed=14)
    async with make_engine(tiny_model, max_slots=1) as engine:
        blocker = await engine.submit(text_prompt(5, seed=12), SamplingParams(max_tokens=10_000))
        async for _ in blocker:  # it holds the only slot
            break
        source = await engine.submit(prompt, SamplingParams(max_tokens=3))
        other = await engine.submit(text_prompt(6, seed=15), SamplingParams(max_tokens=2))
        fork = await engine.fork(source.seq_id, 8, [40, 41], GREEDY)
        await engine.cancel(blocker.seq_id)
        await asyncio.gather(collect(source), collect(other))
        forked = await collect(fork)
        # The other sequence took the source's slot: the fork prefills its whole context.
        assert engine.prefilled_tokens == 5 + len(prompt) + 6 + (8 + 2)
    assert forked == reference(tiny_model, Prompt(prompt.token_ids[:8] + [40, 41]), 12)


async def test_fork_of_an_unknown_sequence_or_past_its_end_fails(tiny_model):
    async with make_engine(tiny_model) as engine:
        source = await engine.submit(text_prompt(5, seed=8), SamplingParams(max_tokens=100))
        with pytest.raises(ValueError, match="has"):
            await engine.fork(source.seq_id, 1000 % engine.max_seq_len, [1], GREEDY)
        with pytest.raises(KeyError):
            await engine.fork(12345, 2, [1], GREEDY)


async def test_cancel_ends_the_stream_and_is_idempotent(tiny_model):
    async with make_engine(tiny_model) as engine:
        stream = await engine.submit(text_prompt(5, seed=9), SamplingParams(max_tokens=10_000))
        async for _ in stream:
            break
        await engine.cancel(stream.seq_id)
        await engine.cancel(stream.seq_id)
        rest = await collect(stream)  # what was already queued, then the end
        assert stream.output.finish_reason == FinishReason.CANCELLED
        assert len(stream.output.token_ids) == 1 + len(rest)
        assert engine.free_slots == engine.max_slots


async def test_close_cancels_running_sequences(tiny_model):
    engine = make_engine(tiny_model)
    stream = await engine.submit(text_prompt(5, seed=9), SamplingParams(max_tokens=10_000))
    await engine.close()
    await collect(stream)
    assert stream.output.finish_reason == FinishReason.CANCELLED
    with pytest.raises(RuntimeError, match="closed"):
        await engine.submit(text_prompt(5, seed=9), GREEDY)


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


TENSOR_TYPES = (torch.Tensor, torch.nn.Parameter)


def live_tensors() -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if type(obj) in TENSOR_TYPES)


ROUND_GROWTH_LIMIT = 256 * 1024


async def test_submit_cancel_cycles_leave_memory_flat(tiny_model):
    params = SamplingParams(max_tokens=10_000)
    async with make_engine(tiny_model) as engine:

        async def cycles(n: int) -> None:
            for i in range(n):
                stream = await engine.submit(text_prompt(8 + i % 5, seed=i), params)
                if i % 2:  # half of them are cancelled while decoding, half maybe before
                    async for _ in stream:
                        break
                await engine.cancel(stream.seq_id)
                assert stream.output.finish_reason == FinishReason.CANCELLED

        await cycles(100)  # warm up allocator pools and caches
        tensors_before = live_tensors()
        # Resident memory is noisy (allocator arenas grow in steps), a leak is not: it grows in
        # every round. The quietest of three rounds of 400 cycles must stay under 256 KiB, i.e.
        # under about 600 bytes a cycle, far below one cache slot or one prompt's embeddings.
        growths = []
        for _ in range(3):
            rss_before = resident_bytes()
            await cycles(400)
            growths.append(resident_bytes() - rss_before)
        tensor_growth = live_tensors() - tensors_before
        assert engine.free_slots == engine.max_slots
    assert tensor_growth <= 0
    assert min(growths) < ROUND_GROWTH_LIMIT, f"resident memory grew by {growths} bytes"


async def test_random_mix_of_submits_forks_and_cancels(tiny_model, reference):
    """Many sessions coming and going: every stream ends, uncancelled ones are exact, and all
    slots come back."""
    rng = torch.Generator().manual_seed(42)

    def draw(low: int, high: int) -> int:
        return int(torch.randint(low, high, (1,), generator=rng))

    async with make_engine(tiny_model, max_slots=3) as engine:
        runs: list[tuple[Prompt, object, int | None]] = []  # prompt, stream, cancel after

        async def session(index: int) -> None:
            prompt = text_prompt(draw(2, 30), seed=100 + index)
            max_tokens = draw(1, 10)
            stream = await engine.submit(prompt, SamplingParams(max_tokens=max_tokens))
            cancel_after = draw(0, 12) if index % 3 == 0 else None
            tokens = []
            async for token in stream:
                tokens.append(token)
                if index % 4 == 1 and len(tokens) == 1 and max_tokens > 1:
                    # Fork at the newest token, while the source still runs.
                    suffix = [draw(10, VOCAB)]
                    try:
                        fork = await engine.fork(stream.seq_id, len(prompt) + 1, suffix, GREEDY)
                    except KeyError:  # the source ended and its slot went to another
                        assert stream.output.finish_reason is not None
                    else:
                        fork_prompt = Prompt(prompt.token_ids + tokens + suffix)
                        runs.append((fork_prompt, fork, None))
                if cancel_after is not None and len(tokens) >= cancel_after:
                    await engine.cancel(stream.seq_id)
            runs.append((prompt, stream, cancel_after))

        await asyncio.gather(*(session(i) for i in range(24)))
        for _, stream, _ in runs:  # forks may still be running
            await collect(stream)
        assert engine.free_slots == engine.max_slots
    for prompt, stream, _ in runs:
        output = stream.output
        assert output.finish_reason in (FinishReason.LENGTH, FinishReason.CANCELLED)
        if output.finish_reason == FinishReason.LENGTH:
            assert output.token_ids == reference(tiny_model, prompt, len(output.token_ids))
