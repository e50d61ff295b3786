"""GPT-Live's session settings: what `session.start` fixes and `session.update` may change (the
delegation), turned into the inner Realtime session's settings. Pure functions: a bad setting
raises `ProtocolError` naming its parameter."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from server.protocol import live_models as lm
from server.protocol import models as m
from server.protocol.audio import AudioFormat
from server.protocol.errors import ErrorCode, ProtocolError

# client delegation: the one tool R1 is shown, whose call is a delegation to the application
DELEGATE_TOOL_NAME = "delegate"
DELEGATE_TOOL: dict[str, Any] = {
    "type": "function",
    "name": DELEGATE_TOOL_NAME,
    "description": (
        "Hand a task to the application: anything you cannot do or know yourself (look-ups, "
        "actions, the user's data). Tell the user briefly that you are on it; the result comes "
        "back to you, and you tell the user."
    ),
    "parameters": {
        "type": "object",
        "properties": {"task": {"type": "string", "description": "what to find out or do"}},
        "required": ["task"],
    },
}
# GPT-Live's backend efforts -> R1's (its thinking-while-speaking modes)
EFFORTS = {
    "none": "minimal",
    "minimal": "minimal",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "xhigh",
}
TOOL_CHOICES = ("auto", "none", "required")
PCM_RATES = (16_000, 24_000)
G711_RATE = 8_000


@dataclass
class Delegating:
    """The session's delegation settings (the only ones `session.update` may change)."""

    type: str = "client"
    acknowledgement_delay_ms: int = 0
    responses: dict[str, Any] = field(default_factory=dict)  # as given, with updates merged
    tools: list[dict[str, Any]] = field(default_factory=list)  # Realtime function tools
    tool_choice: str | dict[str, str] = "auto"
    reasoning_effort: str | None = None
    reasoning_visible: bool = False
    instructions: str = ""  # the backend's
    max_output_tokens: int | None = None


def delegating_of(given: Any, current: Delegating | None) -> Delegating:
    """The delegation settings `given` asks for (at start: `current` None; on update, the
    type may not change and left-out settings keep their values)."""
    if given is None:
        return current if current is not None else Delegating()
    if isinstance(given, lm.DecisionsDelegationIn):
        raise decisions_error("session.delegation.type")
    if current is not None and given.type != current.type:
        raise ProtocolError(
            ErrorCode.INVALID_VALUE,
            f"the delegation type cannot change after start: this session's is "
            f"{current.type!r}; start a new session for another",
            "session.delegation.type",
        )
    base = current if current is not None else Delegating(type=given.type)
    delay = given.acknowledgement_delay_ms
    if delay is None:
        delay = base.acknowledgement_delay_ms
    if isinstance(given, lm.ClientDelegationIn):
        return Delegating("client", delay)
    responses = dict(base.responses)
    if given.responses is not None:
        responses.update(given.responses.model_dump(exclude_unset=True))
    elif current is None:
        raise ProtocolError(
            ErrorCode.MISSING_REQUIRED_PARAMETER,
            "responses delegation needs delegation.responses (its backend's settings)",
            "session.delegation.responses",
        )
    if not responses.get("model"):
        raise ProtocolError(
            ErrorCode.MISSING_REQUIRED_PARAMETER,
            "delegation.responses needs a model (any name: the served model does the work)",
            "session.delegation.responses.model",
        )
    config = lm.ResponsesConfigIn.model_validate(responses)
    path = "session.delegation.responses"
    tools = backend_tools(config.tools or [], f"{path}.tools")
    reasoning = config.reasoning
    return Delegating(
        "responses",
        delay,
        responses,
        tools=tools,
        tool_choice=backend_tool_choice(config.tool_choice, tools, f"{path}.tool_choice"),
        reasoning_effort=EFFORTS[reasoning.effort] if reasoning and reasoning.effort else None,
        reasoning_visible=bool(reasoning and reasoning.summary),
        instructions=config.instructions or "",
        max_output_tokens=config.max_output_tokens,
    )


def inner_update(delegating: Delegating, front: str) -> dict[str, Any]:
    """The inner session's `session.update` for these delegation settings."""
    instructions = "\n\n".join(part for part in (front, delegating.instructions) if part)
    update: dict[str, Any] = {"type": "realtime", "instructions": instructions}
    if delegating.type == "client":
        update["tools"] = [DELEGATE_TOOL]
        update["tool_choice"] = "auto"
        update["include"] = []
        return update
    update["tools"] = delegating.tools
    update["tool_choice"] = delegating.tool_choice
    update["include"] = [m.INCLUDE_REASONING] if delegating.reasoning_visible else []
    if delegating.reasoning_effort is not None:
        update["reasoning"] = {"effort": delegating.reasoning_effort}
    if delegating.max_output_tokens is not None:
        update["max_output_tokens"] = delegating.max_output_tokens
    return update


def decisions_error(param: str) -> ProtocolError:
    return ProtocolError(
        ErrorCode.UNSUPPORTED_FEATURE,
        "Decisions (questions evaluated on the transcript) are not served here",
        param,
    )


def live_format(given: lm.LiveFormatIn | None) -> dict[str, Any]:
    """GPT-Live's one format for both directions, as a Realtime format."""
    if given is None:
        return {"type": "audio/pcm", "rate": 24_000}
    param = "session.audio.format.rate"
    if given.type == "audio/pcm":
        rate = given.rate or 24_000
        if rate not in PCM_RATES:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED_AUDIO_FORMAT,
                f"audio/pcm at {rate} Hz is not supported; use rate 24000 or 16000",
                param,
            )
        return {"type": "audio/pcm", "rate": rate}
    if given.rate not in (None, G711_RATE):
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_AUDIO_FORMAT, f"{given.type} is at {G711_RATE} Hz", param
        )
    return {"type": given.type}


def render_format(fmt: AudioFormat) -> dict[str, Any]:
    if fmt.codec in ("pcmu", "pcma"):
        return {"type": f"audio/{fmt.codec}", "rate": fmt.sample_rate}
    return {"type": "audio/pcm", "rate": fmt.sample_rate}


def initial_item(item: lm.InitialItemIn) -> dict[str, Any]:
    """A `session.input` message as a Realtime conversation item (developer: a system turn)."""
    text = item.content[0].text
    if item.role == "assistant":
        return {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text}],
        }
    role = "system" if item.role == "developer" else "user"
    return {"type": "message", "role": role, "content": [{"type": "input_text", "text": text}]}


def text_of(parts: Sequence[lm.OutputTextPartIn]) -> str:
    return "".join(part.text for part in parts)


def backend_tools(tools: list[dict[str, Any]], param: str) -> list[dict[str, Any]]:
    """The backend's tools as Realtime function tools: function tools only (the others run on
    OpenAI's side: web search, files, code, MCP, ...)."""
    functions = []
    for index, tool in enumerate(tools):
        kind = tool.get("type")
        if kind != "function":
            raise ProtocolError(
                ErrorCode.UNSUPPORTED_FEATURE,
                f"{kind!r} tools run on OpenAI's side; this server serves function tools, "
                "which your application runs",
                f"{param}.{index}.type",
            )
        given = lm.validated(m.ToolIn, tool, "tools", f"{param}.{index}")
        functions.append(given.model_dump(exclude_none=True, exclude={"strict"}))
    return functions


def backend_tool_choice(
    given: Any, tools: list[dict[str, Any]], param: str
) -> str | dict[str, str]:
    if given is None or given in TOOL_CHOICES:
        return given or "auto"
    if (
        isinstance(given, dict)
        and given.get("type") == "function"
        and set(given) == {"type", "name"}
    ):
        if given["name"] not in {tool["name"] for tool in tools}:
            raise ProtocolError(
                ErrorCode.INVALID_VALUE,
                f"tool_choice names {given['name']!r}, which is not one of the tools",
                param,
            )
        return {"type": "function", "name": given["name"]}
    raise ProtocolError(
        ErrorCode.UNSUPPORTED_FEATURE,
        "tool_choice may be auto, none, required or one function ({type: function, name})",
        param,
    )
