"""Batches for the trainer and the evaluator: mels through the encoder, spliced into the decoder.

`embed_batch` runs the same computation as `StepAudio2ForCausalLM.encode_mels` (zero-padded mels,
padded frames hidden from attention), but with gradients, and places each clip's rows at its
`<audio_patch>` positions. Training sequences are right-padded (causal attention never looks
ahead, so padding needs no mask); generation prompts are left-padded so that every row's next
token is at the same position.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import numpy as np
import torch
from transformers import DynamicCache, Qwen2Model

from streaming.model.audio_encoder import MEL_END_FRAMES
from streaming.model.modeling import StepAudio2ForCausalLM

# transformers renamed Qwen2Model.forward's `past_key_values` to `cache` (5.2x).
_CACHE_ARGUMENT = (
    "cache" if "cache" in inspect.signature(Qwen2Model.forward).parameters else "past_key_values"
)
LENGTH_GROUP_BATCHES = 32  # batches drawn together, then sorted by length to cut padding


def encode_clips(
    model: StepAudio2ForCausalLM, mels: Sequence[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """[n_clips, T', hidden] adaptor outputs and their valid lengths [n_clips]."""
    lengths = torch.tensor([m.shape[-1] for m in mels])
    batch = torch.zeros(len(mels), mels[0].shape[0], int(lengths.max()))
    for row, mel in zip(batch, mels, strict=True):
        row[:, : mel.shape[-1]] = mel
    batch = batch.to(model.device, model.dtype)
    states, encoder_lens = model.encoder(batch, (lengths - MEL_END_FRAMES).to(model.device))
    return model.adapter(states, encoder_lens)


def embed_batch(
    model: StepAudio2ForCausalLM,
    ids: torch.Tensor,
    patch_id: int,
    mels: Sequence[torch.Tensor],
    spans: Sequence[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder input embeddings for `ids` [B, L]. Its audio spans, in row-major order, hold
    `mels[spans[0]]`, `mels[spans[1]]`, ... (default: each mel once, in order), so a clip used
    by several sequences is encoded once. Also returns the adaptor outputs [n_mels, T', hidden]
    (for an auxiliary loss)."""
    embeds = model.embed_tokens(ids)
    if not mels:
        return embeds, embeds.new_zeros(0, 0, embeds.shape[-1])
    audio, lengths = encode_clips(model, mels)
    spans = range(len(mels)) if spans is None else spans
    rows = torch.cat([audio[i, : int(lengths[i])] for i in spans])
    mask = (ids == patch_id).unsqueeze(-1)
    if int(mask.sum()) != len(rows):
        raise ValueError(f"{int(mask.sum())} <audio_patch> positions for {len(rows)} audio rows")
    return embeds.masked_scatter(mask, rows.to(embeds.dtype)), audio


def encode_grouped(
    model: StepAudio2ForCausalLM, mels: Sequence[torch.Tensor], group: int
) -> list[torch.Tensor]:
    """Each clip's adaptor output [n_i, hidden] (valid rows only), encoded in batches of about
    `group` clips of similar length, so that short clips are not padded to the longest."""
    order = sorted(range(len(mels)), key=lambda i: mels[i].shape[-1])
    out: list[torch.Tensor | None] = [None] * len(mels)
    for start in range(0, len(order), group):
        chunk = order[start : start + group]
        audio, lengths = encode_clips(model, [mels[i] for i in chunk])
        for row, i in enumerate(chunk):
            out[i] = audio[row, : int(lengths[row])]
    return [rows for rows in out if rows is not None]


def splice_audio(
    model: StepAudio2ForCausalLM,
    ids: torch.Tensor,
    patch_id: int,
    rows: Sequence[torch.Tensor],
) -> torch.Tensor:
    """Decoder input embeddings for `ids` [B, L] with `rows` (one tensor per audio span, in
    row-major order) at its `<audio_patch>` positions."""
    embeds = model.embed_tokens(ids)
    if not rows:
        return embeds
    audio = torch.cat(list(rows))
    mask = (ids == patch_id).unsqueeze(-1)
    if int(mask.sum()) != len(audio):
        raise ValueError(f"{int(mask.sum())} <audio_patch> positions for {len(audio)} audio rows")
    return embeds.masked_scatter(mask, audio.to(embeds.dtype))


def length_groups(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Indices sorted by length, cut into groups whose padded size (rows x longest) stays
    within `max_tokens` (a longer row goes alone)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups: list[list[int]] = []
    for i in order:
        if groups and (len(groups[-1]) + 1) * lengths[i] <= max_tokens:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def pad_right(rows: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    out = torch.full((len(rows), max(map(len, rows))), value, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def epoch_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Item indices of every batch of one epoch: shuffled, then grouped by similar length."""
    order = np.random.default_rng([seed, 11, epoch]).permutation(len(lengths))
    group = batch_size * LENGTH_GROUP_BATCHES
    batches = []
    for start in range(0, len(order), group):
        chunk = order[start : start + group]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    shuffle = np.random.default_rng([seed, 12, epoch]).permutation(len(batches))
    return [batches[i] for i in shuffle]


@torch.inference_mode()
def greedy_generate(
    model: StepAudio2ForCausalLM,
    prompts: Sequence[Sequence[int]],
    mels: Sequence[torch.Tensor],
    patch_id: int,
    stop_ids: Sequence[int],
    max_new_tokens: int,
) -> list[list[int]]:
    """Greedy continuation of each prompt (left-padded, KV-cached), stop token excluded."""
    width = max(map(len, prompts))
    ids = torch.zeros(len(prompts), width, dtype=torch.long)
    mask = torch.zeros(len(prompts), width, dtype=torch.long)
    for i, prompt in enumerate(prompts):
        ids[i, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        mask[i, width - len(prompt) :] = 1
    ids, mask = ids.to(model.device), mask.to(model.device)
    embeds, _ = embed_batch(model, ids, patch_id, mels)
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    cache = {_CACHE_ARGUMENT: DynamicCache(config=model.config.text)}  # updated in place
    out = model.model(
        inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True, **cache
    )
    stops = torch.tensor(list(stop_ids), device=model.device)
    generated: list[list[int]] = [[] for _ in prompts]
    done = torch.zeros(len(prompts), dtype=torch.bool, device=model.device)
    for _ in range(max_new_tokens):
        token = model.lm_head(out.last_hidden_state[:, -1]).argmax(-1)
        done |= torch.isin(token, stops)
        for i, t in enumerate(token.tolist()):
            if not done[i]:
                generated[i].append(t)
        if bool(done.all()):
            break
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        positions = positions[:, -1:] + 1
        out = model.model(
            inputs_embeds=model.embed_tokens(token[:, None]),
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            **cache,
        )
    return generated
