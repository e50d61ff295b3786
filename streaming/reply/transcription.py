"""The served model's transcription of a user turn (`PromptBuilder.transcription`): the ASR task
the model was trained on, over audio the reply has usually encoded already."""

from __future__ import annotations

from collections.abc import AsyncIterator

import torch
from transformers import PreTrainedTokenizerBase

from streaming.engine.base import Engine, SamplingParams
from streaming.model.prompt import PromptBuilder
from streaming.reasoning import IncrementalDetokenizer
from streaming.responder import TranscriptDelta

# A transcript is the words of one turn: Whisper's own cap on the tokens of a 30 s window.
TRANSCRIPT_MAX_TOKENS = 448


async def transcribe(
    engine: Engine,
    builder: PromptBuilder,
    tokenizer: PreTrainedTokenizerBase,
    stop_ids: tuple[int, ...],
    chunks: list[torch.Tensor],
) -> AsyncIterator[TranscriptDelta]:
    """The words of the encoded `chunks`, as the engine decodes them."""
    params = SamplingParams(max_tokens=TRANSCRIPT_MAX_TOKENS, stop_ids=stop_ids)
    stream = await engine.submit(builder.transcription(chunks), params)
    detokenizer = IncrementalDetokenizer(tokenizer)
    stops = set(stop_ids)
    started = False
    try:
        async for token in stream:
            if token in stops:
                break
            text = detokenizer.push(token)
            if not started:
                text = text.lstrip()
                started = bool(text)
            if text:
                yield TranscriptDelta(text)
    finally:
        if stream.output.finish_reason is None:
            await engine.cancel(stream.seq_id)
