"""Prompt assembly in StepFun's turn format -> `streaming.engine.base.Prompt`.

A turn is `<|BOT|>{role}\\n{content}<|EOT|>`, roles `system`, `human` (OpenAI's `user`) and
`assistant`. Content is text, or a list of parts (text and audio), joined with nothing between
them as StepFun's `apply_chat_template` does. One audio chunk (<= 25 s, a [n, hidden] tensor
from `encode_audio`) becomes `<audio_start>` + n x `<audio_patch>` + `<audio_end>`, and its rows
go into `Prompt.audio_embeds` in order.

Assistant turns carry a reasoning block: `<think>\\n{reasoning}\\n</think>\\n{answer}`. History
keeps answers only, so a past assistant turn is `<think>\\n\\n</think>\\n{answer}`. The R1
generation prompt is `<|BOT|>assistant\\n<think>\\n`; `assistant_prefix` builds the prefix of the
articulation branch (reasoning so far, then answer so far; docs/ARCHITECTURE.md).

Tools and transcription follow StepFun's Step-Audio 2 chat template:
- declared tools are a turn `<|BOT|>tool_json_schemas\\n{json}<|EOT|>` right after the system
  turn, the JSON a list of chat-completions tools `{"type": "function", "function": {...}}`;
- the model calls one as `<tool_call>function\\n{name}\\n{arguments json}</tool_call>` inside
  its answer, and such an assistant turn keeps its calls in the history;
- a result is a turn `<|BOT|>function_output\\n{name}\\n{output}<|EOT|>`;
- transcription is StepFun's ASR task: the system prompt `TRANSCRIBE_PROMPT` (their
  "write down the speech you hear"), the audio as a human turn, and an answer without
  reasoning (`<think>\\n\\n</think>\\n` is prefilled) that is the words heard.

Text is tokenized with special tokens split (a user cannot type `<|EOT|>` into the structure);
special ids are inserted directly, never parsed from text. Where the tokenizer has no single
token for `<think>`, `</think>`, `<tool_call>` or `</tool_call>`, the tag is written as text,
tokenized with its neighbours.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from streaming.engine.base import Prompt
from streaming.model.tokens import THINK, THINK_END, TOOL_CALL, TOOL_CALL_END, SpecialTokens
from streaming.tool_calls import ToolCall, canonical_arguments

ROLE_NAMES = {
    "system": "system",
    "user": "human",
    "human": "human",
    "assistant": "assistant",
    "tool": "function_output",
    "function_output": "function_output",
}
# StepFun's ASR prompt ("please write down the speech content you hear"), from their examples.
TRANSCRIBE_PROMPT = "请记录下你所听到的语音内容。"

Part = str | torch.Tensor  # text, or one audio chunk's embeddings [n, hidden]


@dataclass(frozen=True)
class Message:
    """One turn. `content`: text or parts. `reasoning`: assistant only; None in history.
    `tool_calls`: an assistant turn's calls, after its answer. `name`: the function whose
    output a `function_output` (OpenAI `tool`) turn carries."""

    role: str
    content: str | Sequence[Part] = ""
    reasoning: str | None = None
    tool_calls: Sequence[ToolCall] = ()
    name: str | None = None


def tool_schemas_json(tools: Sequence[Mapping[str, Any]]) -> str:
    """The `tool_json_schemas` turn's content: each tool as a chat-completions function tool.
    A Realtime tool (`{"type": "function", "name", "description", "parameters"}`) is wrapped;
    one already in chat-completions form is kept."""
    wrapped = []
    for tool in tools:
        if "function" in tool:
            wrapped.append(dict(tool))
            continue
        function = {key: tool[key] for key in ("name", "description", "parameters") if key in tool}
        wrapped.append({"type": "function", "function": function})
    return json.dumps(wrapped, ensure_ascii=False)


class PromptBuilder:
    """Turns messages into token ids and audio embeddings with one checkpoint's tokenizer."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, special: SpecialTokens) -> None:
        self.tokenizer = tokenizer
        self.special = special

    def build(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[Mapping[str, Any]] = (),
        add_generation_prompt: bool = True,
    ) -> Prompt:
        """All turns, then (by default) the R1 generation prompt `<|BOT|>assistant\\n<think>\\n`.
        `tools` go into a `tool_json_schemas` turn after the leading system turn (if any)."""
        ids: list[int] = []
        audio: list[torch.Tensor] = []
        lead = 1 if messages and ROLE_NAMES.get(messages[0].role) == "system" else 0
        for message in messages[:lead]:
            ids += self._turn(message, audio)
        if tools:
            ids += self._plain_turn("tool_json_schemas", tool_schemas_json(tools))
        for message in messages[lead:]:
            ids += self._turn(message, audio)
        if add_generation_prompt:
            ids += self.assistant_prefix()
        embeds = torch.cat(audio) if audio else None
        return Prompt(token_ids=ids, audio_embeds=embeds, audio_patch_id=self.special.audio_patch)

    def transcription(self, chunks: Sequence[torch.Tensor]) -> Prompt:
        """StepFun's ASR prompt over one turn's audio chunks; the model writes the words heard
        and `<|EOT|>`."""
        messages = [Message("system", TRANSCRIBE_PROMPT), audio_message(chunks)]
        prompt = self.build(messages, add_generation_prompt=False)
        prompt.token_ids += self.assistant_prefix(reasoning="")
        return prompt

    def tool_call(self, call: ToolCall) -> list[int]:
        """`<tool_call>function\\n{name}\\n{arguments}</tool_call>` as ids."""
        ids = self._ids()
        self._write_tool_call(ids, call)
        return ids.done()

    def assistant_prefix(
        self, reasoning: str | Sequence[int] | None = None, answer: str | Sequence[int] = ""
    ) -> list[int]:
        """`<|BOT|>assistant\\n<think>\\n`, and with `reasoning`, the articulation prefix
        `...<think>\\n{reasoning}\\n</think>\\n{answer}`.

        Strings are tokenized as the whole text between two special tokens would be (as a chat
        template string is). Token id lists are used verbatim, for a prefix that shares its ids
        with a running sequence: `reasoning` ids are what the model wrote after the generation
        prompt and before `</think>` (its own newline included), `answer` ids what it wrote
        after `</think>\\n`.
        """
        ids = self._ids()
        ids.token(self.special.bot)
        ids.text("assistant\n")
        ids.tag(self.special.think, THINK)
        if reasoning is None:
            ids.text("\n")
            return ids.done()
        if isinstance(reasoning, str):
            ids.text(f"\n{reasoning}\n")
        else:
            ids.text("\n")
            ids.verbatim(reasoning)
        ids.tag(self.special.think_end, THINK_END)
        if isinstance(answer, str):
            ids.text(f"\n{answer}")
        else:
            ids.text("\n")
            ids.verbatim(answer)
        return ids.done()

    def encode(self, text: str) -> list[int]:
        """Plain text -> ids; special-token strings in it are treated as text."""
        if not text:
            return []
        return self.tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)

    def _ids(self) -> _IdsWriter:
        return _IdsWriter(self.encode)

    def _turn(self, message: Message, audio: list[torch.Tensor]) -> list[int]:
        role = ROLE_NAMES.get(message.role)
        if role is None:
            raise ValueError(f"unknown role {message.role!r}; expected one of {list(ROLE_NAMES)}")
        if message.reasoning is not None and role != "assistant":
            raise ValueError(f"only assistant turns have reasoning, not {message.role!r}")
        if message.tool_calls and role != "assistant":
            raise ValueError(f"only assistant turns have tool calls, not {message.role!r}")
        if role == "assistant":
            return self._assistant_turn(message)
        ids = self._ids()
        ids.token(self.special.bot)
        ids.text(f"{role}\n")
        if role == "function_output":
            ids.text(f"{message.name or 'tool'}\n")
        if isinstance(message.content, str):  # StepFun tokenizes "{role}\n{content}" as one
            ids.text(message.content)
        else:
            for part in message.content:  # StepFun tokenizes each part on its own
                ids.flush()
                if isinstance(part, str):
                    ids.text(part)
                else:
                    self._audio_span(part, ids, audio)
        ids.token(self.special.eot)
        return ids.done()

    def _assistant_turn(self, message: Message) -> list[int]:
        if not isinstance(message.content, str):
            raise ValueError("assistant turns hold text only")
        prefix = self.assistant_prefix(reasoning=message.reasoning or "", answer=message.content)
        ids = self._ids()
        ids.verbatim(prefix)
        for call in message.tool_calls:
            self._write_tool_call(ids, call)
        ids.token(self.special.eot)
        return ids.done()

    def _plain_turn(self, role: str, content: str) -> list[int]:
        ids = self._ids()
        ids.token(self.special.bot)
        ids.text(f"{role}\n{content}")
        ids.token(self.special.eot)
        return ids.done()

    def _write_tool_call(self, ids: _IdsWriter, call: ToolCall) -> None:
        ids.tag(self.special.tool_call, TOOL_CALL)
        ids.text(f"function\n{call.name}\n{canonical_arguments(call.arguments)}")
        ids.tag(self.special.tool_call_end, TOOL_CALL_END)

    def _audio_span(self, embeds: torch.Tensor, ids: _IdsWriter, audio: list[torch.Tensor]) -> None:
        if embeds.dim() != 2:
            raise ValueError(f"audio embeddings must be [n, hidden], got {tuple(embeds.shape)}")
        audio.append(embeds)
        ids.verbatim(
            [
                self.special.audio_start,
                *[self.special.audio_patch] * len(embeds),
                self.special.audio_end,
            ]
        )


class _IdsWriter:
    """Ids from special tokens and text; adjacent text is tokenized as one run, as a template
    string would be. A tag the tokenizer has no single token for is written as text."""

    def __init__(self, encode: Callable[[str], list[int]]) -> None:
        self._encode = encode
        self._ids: list[int] = []
        self._text = ""

    def text(self, text: str) -> None:
        self._text += text

    def tag(self, token_id: int | None, tag: str) -> None:
        if token_id is None:
            self._text += tag
        else:
            self.token(token_id)

    def token(self, token_id: int) -> None:
        self.verbatim([token_id])

    def verbatim(self, ids: Sequence[int]) -> None:
        self.flush()
        self._ids += ids

    def flush(self) -> None:
        if self._text:
            self._ids += self._encode(self._text)
            self._text = ""

    def done(self) -> list[int]:
        self.flush()
        return self._ids


def audio_message(
    chunks: Sequence[torch.Tensor], text: str | None = None, text_first: bool = True
) -> Message:
    """A user turn of audio chunks (from `encode_audio`), optionally with an instruction."""
    parts: list[Part] = list(chunks)
    if text:
        parts = [text, *parts] if text_first else [*parts, text]
    return Message(role="human", content=parts)
