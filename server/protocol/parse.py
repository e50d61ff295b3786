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

# pydantic error type -> our code; anything else is a wrong type or value
_VALIDATION_CODES = {
    "missing": ErrorCode.MISSING_REQUIRED_PARAMETER,
    "extra_forbidden": ErrorCode.UNKNOWN_PARAMETER,
}


def parse_json(message: str | bytes) -> dict[str, Any]:
    try:
        data = json.loads(message)
    except (ValueError, UnicodeDecodeError) as error:
        raise ProtocolError(
            ErrorCode.INVALID_JSON, f"the message is not valid JSON: {error}"
        ) from None
    if not isinstance(data, dict):
        raise ProtocolError(ErrorCode.INVALID_JSON, "a client event must be a JSON object")
    return data


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
