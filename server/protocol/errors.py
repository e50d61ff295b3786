"""Protocol errors: one stable `code` per class of bad input, and the `error` event carrying it.

Policy (as websockets writes it down): the session never raises on bad input; it records an
`error` event naming the offending client `event_id` and what to fix, drops that one event, and
goes on with its state untouched. Internal failures reach the client as `server_error` with no
details; the details go to the log.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    INVALID_JSON = "invalid_json"  # not JSON, or not a JSON object
    MISSING_EVENT_TYPE = "missing_event_type"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    MISSING_REQUIRED_PARAMETER = "missing_required_parameter"
    INVALID_VALUE = "invalid_value"  # wrong type or out of range
    UNKNOWN_PARAMETER = "unknown_parameter"
    INVALID_BASE64 = "invalid_base64"
    UNSUPPORTED_AUDIO_FORMAT = "unsupported_audio_format"
    UNSUPPORTED_FEATURE = "unsupported_feature"  # valid OpenAI input this server does not serve
    MESSAGE_TOO_LARGE = "message_too_large"
    INPUT_AUDIO_BUFFER_FULL = "input_audio_buffer_full"
    INPUT_AUDIO_BUFFER_COMMIT_EMPTY = "input_audio_buffer_commit_empty"
    # OpenAI's own codes for item operations and response conflicts (clients match on them:
    # pipecat treats every error but the two response ones as fatal, livekit treats a
    # duplicate item id as benign)
    ITEM_RETRIEVE_INVALID_ITEM_ID = "item_retrieve_invalid_item_id"
    ITEM_DELETE_INVALID_ITEM_ID = "item_delete_invalid_item_id"
    ITEM_TRUNCATE_INVALID_ITEM_ID = "item_truncate_invalid_item_id"
    ITEM_CREATE_INVALID_PREVIOUS_ITEM_ID = "item_create_invalid_previous_item_id"
    ITEM_CREATE_DUPLICATE_ITEM_ID = "item_create_duplicate_item_id"
    ACTIVE_RESPONSE = "conversation_already_has_active_response"
    NO_ACTIVE_RESPONSE = "response_cancel_not_active"
    # ours, where OpenAI defines none
    ITEM_IN_PROGRESS = "item_in_progress"
    TRUNCATE_INVALID_ITEM = "truncate_invalid_item"
    TRUNCATE_PAST_END = "truncate_past_end"
    UNKNOWN_CALL_ID = "unknown_call_id"  # a function_call_output for no call in the conversation
    CONVERSATION_FULL = "conversation_full"  # the item limit of a session
    CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"  # the conversation does not fit the model
    INVALID_TOOL_CALL = "invalid_tool_call"  # the model wrote a call that cannot be parsed
    SESSION_CLOSED = "session_closed"
    SESSION_EXPIRED = "session_expired"
    SESSION_IDLE_TIMEOUT = "session_idle_timeout"
    SESSION_LIMIT_REACHED = "session_limit_reached"
    # the server drains for a restart (server/drain.py): a session refused or closed because of
    # it; the client should reconnect (a balancer sends it to another replica)
    SERVER_SHUTTING_DOWN = "server_shutting_down"
    TRANSCRIPTION_FAILED = "transcription_failed"  # a user transcript could not be written
    SERVER_ERROR = "server_error"


SERVER_SIDE = {
    ErrorCode.SERVER_ERROR,
    ErrorCode.INVALID_TOOL_CALL,
    ErrorCode.SERVER_SHUTTING_DOWN,
    ErrorCode.TRANSCRIPTION_FAILED,
}
# OpenAI's wording of `response_cancel_not_active`, kept verbatim because clients match on it:
# livekit-agents drops an error whose message starts "Cancellation failed" as the benign race of
# a cancel with a response's end, and logs any other at ERROR.
NO_ACTIVE_RESPONSE_MESSAGE = "Cancellation failed: no active response found"


class ProtocolError(Exception):
    """Bad client input; becomes an `error` event, never a dropped connection."""

    def __init__(self, code: ErrorCode, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


def error_object(
    code: ErrorCode | str,
    message: str,
    *,
    param: str | None = None,
    client_event_id: str | None = None,
) -> dict[str, Any]:
    """OpenAI's error object, the one shape of every error this server reports: in an `error`
    event, in a failed transcript, and as the body of a refused HTTP request (`code` may be one
    of the HTTP edge's own, a plain string)."""
    error = {
        "type": "server_error" if code in SERVER_SIDE else "invalid_request_error",
        "code": str(code),
        "message": message,
        "param": param,
    }
    return error if client_event_id is None else {**error, "event_id": client_event_id}


def error_event(
    event_id: str,
    code: ErrorCode,
    message: str,
    *,
    client_event_id: str | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    error = error_object(code, message, param=param) | {"event_id": client_event_id}
    return {"type": "error", "event_id": event_id, "error": error}
