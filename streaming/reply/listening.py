"""Listening ahead: every 25 s of a turn still being spoken, its finished chunks are encoded and
a "listening" sequence prefills the conversation and the turn up to the end of the last
finished chunk. The reply then forks it with the rest of the turn (the last chunk and the
turn's end) as the suffix, so the work left when a long turn ends does not grow with its
length."""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass, replace

import numpy as np
import torch

from streaming.engine.base import Engine, EngineError, Prompt, SamplingParams, TokenStream
from streaming.model.frontend import CHUNK_SAMPLES, split_chunks
from streaming.model.prompt import audio_message
from streaming.reply.prompt import ConversationPrompt
from streaming.responder import ResponseRequest

logger = logging.getLogger(__name__)

# Listening sequences kept, one per turn being spoken, least recently prepared first out: one per
# session that is listening. Each costs a prompt here and, in the engine, a free slot that keeps
# its keys/values until another sequence needs it.
LISTENING_TURNS = 16
# A listening sequence is only prefilled; its one generated token is never read.
LISTEN = SamplingParams(max_tokens=1)


@dataclass
class Listening:
    """A sequence that prefilled `prompt`: the conversation and the start of a turn still being
    spoken. A response whose prompt starts with it forks it (`Engine.fork`)."""

    stream: TokenStream
    prompt: Prompt

    def rest_of(self, prompt: Prompt) -> Prompt | None:
        """What `prompt` has after this context (ids and audio rows), or None where `prompt`
        does not start with exactly this context."""
        held = self.prompt
        n = len(held)
        if prompt.token_ids[:n] != held.token_ids or prompt.audio_patch_id != held.audio_patch_id:
            return None
        heard, audio = held.audio_embeds, prompt.audio_embeds
        rows = 0 if heard is None else len(heard)
        if (
            heard is not None
            and rows
            and (audio is None or len(audio) < rows or not torch.equal(audio[:rows], heard))
        ):
            return None
        rest_audio = None if audio is None else audio[rows:]
        return Prompt(prompt.token_ids[n:], rest_audio, prompt.audio_patch_id)

    async def prefilled(self) -> None:
        """Wait for the end of its one-token run, so that a fork reuses all its prefill. Raises
        the engine's error where it failed."""
        async for _ in self.stream:
            pass


class ListeningAhead:
    def __init__(self, engine: Engine, prompts: ConversationPrompt) -> None:
        self.engine = engine
        self.prompts = prompts
        self._turns: collections.OrderedDict[str, Listening] = collections.OrderedDict()

    async def prepare(self, request: ResponseRequest) -> None:
        """Encode the finished 25 s chunks of the turn being spoken (they are the same samples
        in the committed turn) and prefill the conversation up to the end of the last one's
        audio, so that at the end of a long turn only its last chunk is left to encode and
        prefill."""
        turn = request.turns[-1] if request.turns else None
        if turn is None or turn.audio is None or turn.item_id is None:
            return
        chunks = split_chunks(np.asarray(turn.audio, np.float32))
        heard = [
            await self.prompts.audio.encode_chunk(turn.item_id, index, chunk)
            for index, chunk in enumerate(chunks)
            if len(chunk) == CHUNK_SAMPLES
        ]
        if not heard:
            return
        history = await self.prompts.messages(replace(request, turns=request.turns[:-1]))
        open_turn = audio_message(heard, text=turn.text)
        builder = self.prompts.builder
        conversation = builder.build([*history, open_turn], add_generation_prompt=False)
        # The turn goes on: its `<|EOT|>` is not heard yet.
        prompt = replace(conversation, token_ids=conversation.token_ids[:-1])
        previous = self._turns.get(turn.item_id)
        unheard = previous.rest_of(prompt) if previous is not None else None
        if unheard is not None and not len(unheard):
            return  # nothing new was heard
        listening = Listening(await self.submit(prompt, LISTEN), prompt)
        await self._remember(turn.item_id, listening)
        await listening.prefilled()  # done once the work is: the caller may wait for it

    async def submit(self, prompt: Prompt, params: SamplingParams) -> TokenStream:
        """Fork the listening sequence that holds the longest start of `prompt` (the whole turn
        but what was said since), else submit the whole prompt."""
        matches = [
            (listening, rest)
            for listening in self._turns.values()
            if (rest := listening.rest_of(prompt)) is not None
        ]
        if matches:
            listening, rest = min(matches, key=lambda match: len(match[1]))
            try:
                await listening.prefilled()
                return await self.engine.fork(
                    listening.stream.seq_id, len(listening.prompt), rest, params
                )
            except (KeyError, EngineError):  # the engine forgot it (ended long ago), or it failed
                logger.info(
                    "listening sequence %d not forked; prefilling the whole prompt",
                    listening.stream.seq_id,
                )
        return await self.engine.submit(prompt, params)

    async def _remember(self, item_id: str, listening: Listening) -> None:
        """One listening sequence per turn, the newest; the oldest turns are forgotten."""
        replaced = self._turns.pop(item_id, None)
        self._turns[item_id] = listening
        gone = [replaced] if replaced is not None else []
        while len(self._turns) > LISTENING_TURNS:
            gone.append(self._turns.popitem(last=False)[1])
        for old in gone:
            await self.engine.cancel(old.stream.seq_id)
