"""The conversation as a prompt: its turns as messages (user audio encoded), and, where the
model's context or its trained history would be exceeded, the oldest exchanges left out as the
request's `truncation` says."""

from __future__ import annotations

import logging

from streaming.engine.base import Prompt
from streaming.model.config import StepAudio2Config
from streaming.model.prompt import Message, PromptBuilder, audio_message
from streaming.reply.audio import AudioCache
from streaming.responder import ResponseRefused, ResponseRequest, Turn

logger = logging.getLogger(__name__)

# Positions kept free beside the prompt and the reply: the scheduler's answer segments add the
# `</think>` line and a newline to the reasoning they are conditioned on.
PROMPT_SLACK = 8


class ConversationPrompt:
    def __init__(self, builder: PromptBuilder, audio: AudioCache, config: StepAudio2Config) -> None:
        self.builder = builder
        self.audio = audio
        self.config = config  # its `max_history_turns`: what the model was trained on, if known

    async def build(self, request: ResponseRequest, context: int, max_tokens: int) -> Prompt:
        """The prompt up to the assistant turn, within `context` positions beside a reply of
        `max_tokens`."""
        messages = await self.messages(request)
        lead = 1 if request.instructions else 0
        fixed = len(
            self.builder.build(messages[:lead], tools=request.tools, add_generation_prompt=False)
        )
        exchanges = _exchanges(messages[lead:])
        lengths = [
            sum(len(self.builder.build([m], add_generation_prompt=False)) for m in ex)
            for ex in exchanges
        ]
        room = context - max_tokens - PROMPT_SLACK
        drop = self._exchanges_to_drop(request, fixed, lengths, room, max_tokens)
        kept = [message for exchange in exchanges[drop:] for message in exchange]
        if drop:
            logger.info("conversation truncated: %d oldest exchanges left out", drop)
        return self.builder.build(
            [*messages[:lead], *kept], tools=request.tools, add_generation_prompt=False
        )

    async def messages(self, request: ResponseRequest) -> list[Message]:
        messages = [Message("system", request.instructions)] if request.instructions else []
        for turn in request.turns:
            message = await self._message(turn)
            previous = messages[-1] if messages else None
            if turn.role == "assistant" and previous is not None and previous.role == "assistant":
                # a reply's spoken part and its tool calls are one assistant turn
                message = Message(
                    "assistant",
                    f"{previous.content}{message.content}",
                    tool_calls=[*previous.tool_calls, *message.tool_calls],
                )
                messages[-1] = message
            else:
                messages.append(message)
        return messages

    async def _message(self, turn: Turn) -> Message:
        if turn.audio is None:
            return Message(turn.role, turn.text or "", tool_calls=turn.tool_calls, name=turn.name)
        if turn.role != "user":
            raise ValueError(f"only user turns may carry audio, not {turn.role!r}")
        return audio_message(await self.audio.encode(turn), text=turn.text)

    def _exchanges_to_drop(
        self, request: ResponseRequest, fixed: int, lengths: list[int], room: int, max_tokens: int
    ) -> int:
        """How many of the oldest exchanges leave the context (the live one always stays)."""
        history_turns = self.config.max_history_turns
        needed = 0
        while fixed + sum(lengths[needed:]) > room or (
            history_turns is not None and len(lengths) - needed - 1 > history_turns
        ):
            needed += 1
            if needed >= len(lengths):
                raise ResponseRefused(
                    "context_length_exceeded",
                    f"the instructions, tools and the last turn take {fixed + lengths[-1]} "
                    f"tokens; the model has room for {room} beside max_output_tokens "
                    f"{max_tokens}: shorten them",
                )
        truncation = request.truncation
        if needed and truncation.type == "disabled":
            raise ResponseRefused(
                "context_length_exceeded",
                f"the conversation takes {fixed + sum(lengths)} tokens and the model has room "
                f"for {room}, and truncation is disabled: delete items or enable truncation",
            )
        if needed and truncation.type == "retention_ratio":
            target = room * truncation.retention_ratio
            while needed < len(lengths) - 1 and fixed + sum(lengths[needed:]) > target:
                needed += 1
        return needed


def _exchanges(messages: list[Message]) -> list[list[Message]]:
    """The conversation cut before each user turn: the units that truncation drops, oldest
    first, so that a tool call never loses its result nor a reply its question."""
    exchanges: list[list[Message]] = []
    for message in messages:
        if not exchanges or message.role in ("user", "human"):
            exchanges.append([])
        exchanges[-1].append(message)
    return exchanges
