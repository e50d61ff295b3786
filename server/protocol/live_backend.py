"""Responses delegation's backend: one inner response's work as a Responses stream, wrapped in
GPT-Live's `response.event`, and the Realtime shapes it is written from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Delegation:
    id: str
    target: str  # "client" or "responses"
    calls: dict[str, bool] = field(default_factory=dict)  # call_id -> its output arrived


@dataclass
class Backend:
    """One inner response's work as a Responses stream, wrapped in `response.event`."""

    delegation: Delegation
    response_id: str
    sequence: int = 0
    output: list[str] = field(default_factory=list)  # its output items' ids, in order
    reasoning_id: str | None = None  # the reasoning item open now
    reasoning: str = ""
    calls: list[str] = field(default_factory=list)  # call_ids it completed

    def wrap(self, type_: str, **fields: Any) -> dict[str, Any]:
        """The next event of its stream (what `response.event` carries)."""
        event = {"type": type_, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return event


def function_call(item: dict[str, Any], status: str) -> dict[str, Any]:
    """A Realtime function_call item as a Responses output item."""
    return {
        "id": item["id"],
        "type": "function_call",
        "call_id": item["call_id"],
        "name": item["name"],
        "arguments": item["arguments"] if status != "in_progress" else "",
        "status": status,
    }


def reasoning_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    content = [{"type": "reasoning_text", "text": text}] if text else []
    return {"id": item_id, "type": "reasoning", "summary": [], "content": content, "status": status}


def responses_usage(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    """Realtime usage as the Responses API's."""
    if usage is None:
        return None
    details = usage.get("output_token_details") or {}
    return {
        "input_tokens": usage["input_tokens"],
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": usage["output_tokens"],
        "output_tokens_details": {"reasoning_tokens": details.get("reasoning_tokens", 0)},
        "total_tokens": usage["total_tokens"],
    }
