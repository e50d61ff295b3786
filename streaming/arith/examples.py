"""Training and evaluation sequences, built with the serving code's own `PromptBuilder`.

A sequence is a session as the server renders it: an optional system turn, optional declared
tools (`<|BOT|>tool_json_schemas\\n...`), up to `MAX_HISTORY_TURNS` earlier exchanges (history
keeps answers only: `<think>\\n\\n</think>\\n{answer}`, tool calls and function outputs kept),
then the live user turn and what the model must write, in one of three modes (see
docs/ARCHITECTURE.md, "The reply"):

    think     prompt `...<|BOT|>assistant\\n<think>\\n`;
              target `{reasoning}\\n</think>\\n{answer}<|EOT|>`
    partial   prompt `...<think>\\n{reasoning cut short}\\n</think>\\n`; target `{answer}<|EOT|>`
              (the articulation branch, Mind-Paced Speaking's think-incomplete training)
    no_think  prompt `...<think>\\n\\n</think>\\n`; target `{answer}<|EOT|>`

The live turn's answer is a spoken answer, the fixed `REJECTION` for anything that is not a
whole question, or, with `calculate` declared, a call `<tool_call>function\\ncalculate\\n
{"expression": "7 * 6"}</tool_call>`; after a call the live turn is the function output and
the answer speaks the number it holds. The loss covers the live target and every earlier
assistant turn (each is exactly what the model writes, in no_think form, at that point of the
session), so one session trains every position of a long conversation.

A transcription sequence is StepFun's ASR prompt (`PromptBuilder.transcription`) over one clip;
its target is the words heard (`Utterance.transcript`) and `<|EOT|>`.

Audio spans are placeholders of the right length (`audio_token_count`); the trainer fills them
with the encoder's output for the listed clips.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from streaming.arith import context
from streaming.arith.data import REJECTION, REJECTION_REASONING, Utterance
from streaming.model.audio_encoder import audio_token_count
from streaming.model.prompt import Message, PromptBuilder, ToolCall, audio_message
from streaming.model.tokens import THINK_END, SpecialTokens

IGNORE = -100  # label of a position without loss (torch's cross-entropy default)
MODES = ("think", "partial", "no_think")
# The most earlier user turns a training session holds: `max_history_turns` in the
# checkpoint's config.json, beyond which the server drops the oldest.
MAX_HISTORY_TURNS = 20


@dataclass(frozen=True)
class Turn:
    """A user turn: clip `clip` of the trainer's pool (spoken) or the utterance's text (typed)."""

    utterance: Utterance
    clip: int = -1
    mel_frames: int = 0

    @property
    def spoken(self) -> bool:
        return self.clip >= 0

    def typed(self) -> Turn:
        return Turn(self.utterance)


@dataclass(frozen=True)
class ToolUse:
    """One call of `calculate`: its arguments JSON and the output the framework sent back."""

    arguments: str
    output: str


@dataclass(frozen=True)
class Exchange:
    """An earlier user turn and what the assistant said (and called) in reply."""

    turn: Turn
    answer: str
    tool: ToolUse | None = None


@dataclass(frozen=True)
class Session:
    """Everything before the live target, and the mode it is written in. With `live_tool` the
    model has called the tool for `live` and its output came back: the reply speaks it."""

    live: Turn
    history: tuple[Exchange, ...] = ()
    system: str | None = None
    tools: tuple[dict[str, Any], ...] = field(default=(), hash=False)
    live_tool: ToolUse | None = None
    mode: str = "think"
    cut: int | None = None  # partial: reasoning tokens kept (None: all)

    @property
    def calls_tool(self) -> bool:
        """The live target is a call: a question, `calculate` declared, no output yet."""
        return (
            self.live_tool is None
            and not self.live.utterance.declined
            and context.declares_calculate(list(self.tools))
        )


@dataclass(frozen=True)
class Target:
    """What the model writes for a live turn: reasoning, then an answer or a tool call."""

    reasoning: str
    answer: str = ""
    call: ToolCall | None = None


@dataclass(frozen=True)
class Sample:
    """Token ids, labels (IGNORE where no loss) and the clips of its audio spans, in order."""

    ids: list[int]
    labels: list[int]
    clips: list[int]


def tool_reasoning(utterance: Utterance) -> str:
    return f"I hear: {utterance.question.heard}. I will use {context.TOOL_NAME}."


def result_reasoning(value: int) -> str:
    return f"The tool returned {value}."


def tool_call_for(utterance: Utterance) -> ToolCall:
    p = utterance.question
    return ToolCall(context.TOOL_NAME, context.call_arguments(p.a, p.op, p.b))


def spoken_result(utterance: Utterance, output: str) -> str:
    """The answer after a call: the question stating the number the output holds."""
    value = context.output_value(output)
    if value is None:
        raise ValueError(f"tool output {output!r} holds no number")
    return utterance.question.answer_with(value)


def target_of(session: Session) -> Target:
    u = session.live.utterance
    if session.live_tool is not None:
        value = context.output_value(session.live_tool.output)
        assert value is not None, session.live_tool.output
        return Target(result_reasoning(value), u.question.answer_with(value))
    if u.declined:
        return Target(REJECTION_REASONING, REJECTION)
    if session.calls_tool:
        return Target(tool_reasoning(u), call=tool_call_for(u))
    return Target(u.question.reasoning, u.question.answer)


class SequenceBuilder:
    def __init__(self, tokenizer: PreTrainedTokenizerBase, special: SpecialTokens) -> None:
        self.prompts = PromptBuilder(tokenizer, special)
        self.special = special
        self.encode = functools.lru_cache(maxsize=1 << 16)(self._encode)
        self._turn_ids = functools.lru_cache(maxsize=1 << 16)(self._uncached_turn_ids)
        self._head_ids = functools.lru_cache(maxsize=1 << 12)(self._uncached_head_ids)
        self._audio_ids = functools.lru_cache(maxsize=1 << 12)(self._uncached_audio_ids)
        self._no_think = self.prompts.assistant_prefix(reasoning="")

    def _encode(self, text: str) -> tuple[int, ...]:
        return tuple(self.prompts.encode(text))

    # -- pieces ------------------------------------------------------------------------------
    def _uncached_turn_ids(self, message: Message) -> tuple[int, ...]:
        return tuple(self.prompts.build([message], add_generation_prompt=False).token_ids)

    def _uncached_head_ids(self, system: str | None, tools_json: str) -> tuple[int, ...]:
        messages = [Message("system", system)] if system else []
        tools = json.loads(tools_json)
        return tuple(
            self.prompts.build(messages, tools=tools, add_generation_prompt=False).token_ids
        )

    def _uncached_audio_ids(self, mel_frames: int) -> tuple[int, ...]:
        message = audio_message([_placeholder(mel_frames)])
        return tuple(self.prompts.build([message], add_generation_prompt=False).token_ids)

    def user_ids(self, turn: Turn) -> list[int]:
        if turn.spoken:
            return list(self._audio_ids(turn.mel_frames))
        return list(self._turn_ids(Message("human", turn.utterance.text)))

    def assistant_ids(self, answer: str, call: ToolCall | None = None) -> tuple[list[int], int]:
        """A history assistant turn and how many of its first ids are the no_think prefix."""
        message = Message("assistant", answer, tool_calls=(call,) if call else ())
        ids = list(self._turn_ids(message))
        if ids[: len(self._no_think)] != self._no_think:
            raise AssertionError("an assistant turn does not start with the no_think prefix")
        return ids, len(self._no_think)

    def tool_output_ids(self, output: str) -> list[int]:
        return list(self._turn_ids(Message("tool", output, name=context.TOOL_NAME)))

    def head_ids(self, system: str | None, tools: Sequence[dict[str, Any]]) -> list[int]:
        return list(self._head_ids(system, json.dumps(list(tools)) if tools else "[]"))

    # -- sessions ----------------------------------------------------------------------------
    def context(self, session: Session, history_loss: bool = True) -> Sample:
        """Ids up to the live turn's generation prompt (excluded); labels on earlier answers."""
        ids = self.head_ids(session.system, session.tools)
        labels = [IGNORE] * len(ids)
        clips: list[int] = []
        turns = [*session.history, None]
        for exchange in turns:
            turn = session.live if exchange is None else exchange.turn
            user = self.user_ids(turn)
            ids += user
            labels += [IGNORE] * len(user)
            if turn.spoken:
                clips.append(turn.clip)
            if exchange is None:
                break
            if exchange.tool is not None:
                call = ToolCall(context.TOOL_NAME, exchange.tool.arguments)
                self._add_assistant(ids, labels, "", call, history_loss)
                output = self.tool_output_ids(exchange.tool.output)
                ids += output
                labels += [IGNORE] * len(output)
            self._add_assistant(ids, labels, exchange.answer, None, history_loss)
        if session.live_tool is not None:
            call = ToolCall(context.TOOL_NAME, session.live_tool.arguments)
            self._add_assistant(ids, labels, "", call, history_loss)
            output = self.tool_output_ids(session.live_tool.output)
            ids += output
            labels += [IGNORE] * len(output)
        return Sample(ids, labels, clips)

    def _add_assistant(
        self,
        ids: list[int],
        labels: list[int],
        answer: str,
        call: ToolCall | None,
        history_loss: bool,
    ) -> None:
        turn, prefix = self.assistant_ids(answer, call)
        ids += turn
        labels += [IGNORE] * prefix + (
            turn[prefix:] if history_loss else [IGNORE] * len(turn[prefix:])
        )

    def generation_prefix(self, session: Session) -> list[int]:
        """The live turn's generation prompt in the session's mode (`partial`: reasoning kept
        up to `cut` tokens, then "\\n" and `</think>\\n`)."""
        mode = session.mode
        if mode == "think":
            return self.prompts.assistant_prefix()
        if mode == "no_think":
            return list(self._no_think)
        if mode != "partial":
            raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
        reasoning = list(self.encode(target_of(session).reasoning))
        kept = reasoning[: len(reasoning) if session.cut is None else session.cut]
        return self.prompts.assistant_prefix(reasoning=kept + list(self.encode("\n")))

    def target_ids(self, session: Session) -> list[int]:
        target = target_of(session)
        if target.call is not None:
            answer = [*self.prompts.tool_call(target.call), self.special.eot]
        else:
            answer = [*self.encode(target.answer), self.special.eot]
        if session.mode != "think":
            return answer
        if self.special.think_end is None:  # a tokenizer without the tag writes it as text
            return [*self.encode(f"{target.reasoning}\n{THINK_END}\n"), *answer]
        return [
            *self.encode(target.reasoning + "\n"),
            self.special.think_end,
            *self.encode("\n"),
            *answer,
        ]

    def prompt_ids(self, session: Session) -> tuple[list[int], list[int]]:
        """(ids up to where the model starts writing, clips in order): a generation prompt."""
        head = self.context(session, history_loss=False)
        return head.ids + self.generation_prefix(session), head.clips

    def sample(self, session: Session) -> Sample:
        """One training sequence: the session, its generation prompt and target."""
        head = self.context(session)
        prefix = self.generation_prefix(session)
        target = self.target_ids(session)
        return Sample(
            ids=head.ids + prefix + target,
            labels=head.labels + [IGNORE] * len(prefix) + target,
            clips=head.clips,
        )

    # -- transcription -------------------------------------------------------------------------
    def transcription_prompt(self, turn: Turn) -> list[int]:
        if not turn.spoken:
            raise ValueError("only a spoken turn can be transcribed")
        return self.prompts.transcription([_placeholder(turn.mel_frames)]).token_ids

    def transcription_sample(self, turn: Turn) -> Sample:
        transcript = turn.utterance.transcript
        if transcript is None:
            raise ValueError(f"a {turn.utterance.kind} clip has no transcript to learn")
        prompt = self.transcription_prompt(turn)
        target = [*self.encode(transcript), self.special.eot]
        return Sample(prompt + target, [IGNORE] * len(prompt) + target, [turn.clip])


def _placeholder(mel_frames: int) -> torch.Tensor:
    """A stand-in for one clip's embeddings: only its row count matters to the builder."""
    return torch.empty(audio_token_count(mel_frames), 0)
