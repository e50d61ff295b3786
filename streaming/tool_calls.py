"""Tool calls in the model's answer: StepFun's `<tool_call>function\\n{name}\\n{args}</tool_call>`.

`ToolCallParser` takes the answer's text deltas and splits them into what may be spoken and the
calls, as they stream: text outside the tags passes at once (holding back only what could still
be the start of `<tool_call>`), a call's arguments stream as deltas once its name line is
complete, and a whole call is checked when `</tool_call>` arrives. A call is never speech.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from streaming.model.tags import TOOL_CALL, TOOL_CALL_END

FUNCTION_LINE = "function\n"  # StepFun's call type line; the only type there is


def canonical_arguments(arguments: str) -> str:
    """Arguments JSON as StepFun's template writes it (`json.dumps`, non-ASCII kept); text that
    is not JSON stays as it is."""
    try:
        return json.dumps(json.loads(arguments), ensure_ascii=False)
    except ValueError:
        return arguments


@dataclass(frozen=True)
class ToolCall:
    """A function call: the tool's name and its arguments as JSON text."""

    name: str
    arguments: str


@dataclass
class ParsedDelta:
    """What one text delta of the answer holds."""

    speech: str = ""
    argument_deltas: list[tuple[int, str, str]] = field(default_factory=list)  # index, name, text
    calls: list[tuple[int, ToolCall]] = field(default_factory=list)  # (index, call) completed


class ToolCallError(ValueError):
    """A call that is not `function\\n{name}\\n{arguments}`, or that never closes."""


class ToolCallParser:
    def __init__(self) -> None:
        self._pending = ""  # text not yet classified
        self._in_call = False
        self._header = ""  # `function\n{name}\n` of the call being read
        self._name: str | None = None
        self._arguments = ""
        self.calls = 0

    def feed(self, text: str) -> ParsedDelta:
        out = ParsedDelta()
        self._pending += text
        while self._pending:
            if not self._in_call and not self._outside(out):
                break
            if self._in_call and not self._inside(out):
                break
        return out

    def finish(self) -> ParsedDelta:
        """The end of the answer: held-back text is speech; an open call is an error."""
        if self._in_call:
            raise ToolCallError(f"the model left a tool call open: {self._header!r}")
        out = ParsedDelta(speech=self._pending)
        self._pending = ""
        return out

    def _outside(self, out: ParsedDelta) -> bool:
        """Speech up to the next `<tool_call>`; False when it must wait for more text."""
        start = self._pending.find(TOOL_CALL)
        if start >= 0:
            out.speech += self._pending[:start]
            self._pending = self._pending[start + len(TOOL_CALL) :]
            self._in_call, self._header, self._name, self._arguments = True, "", None, ""
            return True
        keep = _partial_suffix(self._pending, TOOL_CALL)
        out.speech += self._pending[: len(self._pending) - keep]
        self._pending = self._pending[len(self._pending) - keep :]
        return False

    def _inside(self, out: ParsedDelta) -> bool:
        if self._name is None and not self._read_header():
            return False
        end = self._pending.find(TOOL_CALL_END)
        available = self._pending if end < 0 else self._pending[:end]
        keep = 0 if end >= 0 else _partial_suffix(available, TOOL_CALL_END)
        delta = available[: len(available) - keep]
        assert self._name is not None
        if delta:
            self._arguments += delta
            out.argument_deltas.append((self.calls, self._name, delta))
        if end < 0:
            self._pending = available[len(available) - keep :]
            return False
        self._pending = self._pending[end + len(TOOL_CALL_END) :]
        out.calls.append((self.calls, ToolCall(self._name, self._arguments.strip())))
        self.calls += 1
        self._in_call = False
        return True

    def _read_header(self) -> bool:
        """Consume `function\\n{name}\\n`; False while it is still incomplete."""
        self._header += self._pending
        self._pending = ""
        if not FUNCTION_LINE.startswith(self._header[: len(FUNCTION_LINE)]):
            raise ToolCallError(f"a tool call must start with 'function', got {self._header!r}")
        if len(self._header) <= len(FUNCTION_LINE):
            return False
        rest = self._header[len(FUNCTION_LINE) :]
        newline = rest.find("\n")
        if newline < 0:
            if TOOL_CALL_END in rest:
                raise ToolCallError(f"a tool call has no arguments line: {self._header!r}")
            return False
        name = rest[:newline].strip()
        if not name:
            raise ToolCallError("a tool call has an empty function name")
        self._name = name
        self._pending = rest[newline + 1 :]
        self._header = self._header[: len(FUNCTION_LINE) + newline + 1]
        return True


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest end of `text` that is a proper start of `tag`."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0
