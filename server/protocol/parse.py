"""Client messages to validated events: JSON, event type, fields, base64."""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from pydantic import ValidationError

from server.protocol import models as m
from server.protocol.errors import ErrorCode, ProtocolError

EVENT_ID_SNIFF_BYTES = 256  # where to look for `event_id` in a message not worth parsing
# Deepest nesting of arrays and objects a message may have. The deepest real message is a tool's
# JSON schema inside `session.tools`, a handful of levels; past this the message is an attack on
# the recursion of whatever walks it next (validation, rendering, the prompt template).
MAX_JSON_DEPTH = 64

# pydantic error type -> our code; anything else is a wrong type or value
_VALIDATION_CODES = {
    "missing": ErrorCode.MISSING_REQUIRED_PARAMETER,
    "extra_forbidden": ErrorCode.UNKNOWN_PARAMETER,
}


def load_json(message: str | bytes) -> Any:
    """Any JSON value, checked: valid UTF-8, no NaN or Infinity, at most `MAX_JSON_DEPTH` levels
    of nesting, and no lone UTF-16 surrogate (`"\\ud800"`) in any string or key, so that what
    passes can be encoded, rendered and tokenized again. Raises `ProtocolError(INVALID_JSON)`
    saying what to fix."""
    try:
        data = json.loads(message, parse_constant=_reject_constant)
    except RecursionError:
        raise ProtocolError(ErrorCode.INVALID_JSON, _too_deep_message()) from None
    except (ValueError, UnicodeDecodeError) as error:
        raise ProtocolError(
            ErrorCode.INVALID_JSON, f"the message is not valid JSON: {error}"
        ) from None
    _check_tree(data)
    return data


def parse_json(message: str | bytes) -> dict[str, Any]:
    """A client event's JSON object (see `load_json` for the checks)."""
    data = load_json(message)
    if not isinstance(data, dict):
        raise ProtocolError(ErrorCode.INVALID_JSON, "a client event must be a JSON object")
    return data


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (RFC 8259); send a finite number")


def _too_deep_message() -> str:
    return (
        f"the message nests arrays and objects more than {MAX_JSON_DEPTH} levels deep; flatten it"
    )


def _check_tree(data: Any) -> None:
    """Depth and string checks over the parsed value, without recursion. Only containers are
    stacked, so a long array of numbers costs one type check per element."""
    if isinstance(data, str):
        _check_string(data, ())
    stack: list[tuple[Any, int, tuple[str | int, ...]]] = [(data, 0, ())]
    while stack:
        value, depth, path = stack.pop()
        if not isinstance(value, dict | list):
            continue
        if depth >= MAX_JSON_DEPTH:
            raise ProtocolError(ErrorCode.INVALID_JSON, _too_deep_message())
        pairs = value.items() if isinstance(value, dict) else enumerate(value)
        for key, child in pairs:
            if isinstance(key, str):
                _check_string(key, path)
            if isinstance(child, str):
                _check_string(child, (*path, key))
            elif isinstance(child, dict | list):
                stack.append((child, depth + 1, (*path, key)))


def _check_string(text: str, path: tuple[str | int, ...]) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        surrogate = text[error.start]
        raise ProtocolError(
            ErrorCode.INVALID_JSON,
            f"a string holds a lone UTF-16 surrogate ({surrogate!r}), which is not Unicode "
            "text; escape characters beyond U+FFFF as a high and low surrogate pair",
            _param(path),
        ) from None


def _param(path: tuple[str | int, ...]) -> str | None:
    return ".".join(str(part) for part in path) or None


def validate(data: dict[str, Any]) -> m.ClientEvent:
    type_ = data.get("type")
    if not isinstance(type_, str):
        raise ProtocolError(
            ErrorCode.MISSING_EVENT_TYPE, "every client event needs a string 'type'", "type"
        )
    model = m.CLIENT_EVENTS.get(type_)
    if model is None:
        raise ProtocolError(
            ErrorCode.UNKNOWN_EVENT_TYPE,
            f"unknown event type {type_!r}; known types: {sorted(m.CLIENT_EVENTS)}",
            "type",
        )
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        param = ".".join(str(part) for part in first["loc"])
        code = _VALIDATION_CODES.get(first["type"], ErrorCode.INVALID_VALUE)
        raise ProtocolError(code, f"{type_}: {param}: {first['msg']}", param) from None


def b64decode(text: str, param: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(
            ErrorCode.INVALID_BASE64, f"{param} is not valid base64 (RFC 4648, padded)", param
        ) from None


def sniff_event_id(message: str | bytes) -> str | None:
    """The `event_id` near the start of a message we will not parse, so the error can name it."""
    head = message[:EVENT_ID_SNIFF_BYTES]
    text = head.decode("utf-8", "replace") if isinstance(head, bytes) else head
    found = re.search(r'"event_id"\s*:\s*"([^"]{1,128})"', text)
    return found.group(1) if found else None
