"""The outputs one call of the session machine causes, in the order they must be acted on:
server events, named for the client's dialect as they are written, and actions."""

from __future__ import annotations

from typing import Any

from server.protocol.actions import Action, Output
from server.protocol.errors import ProtocolError, error_event
from server.protocol.items import Item, new_id
from server.protocol.render import BETA_EVENT_NAMES, render_item


class Outputs:
    def __init__(self, beta: bool) -> None:
        self.beta = beta  # the client speaks the beta protocol: its names, and fewer events
        self._out: list[Output] = []

    def emit(self, type_: str, **fields: Any) -> None:
        if self.beta:
            if type_ in BETA_EVENT_NAMES and BETA_EVENT_NAMES[type_] is None:
                return
            type_ = BETA_EVENT_NAMES.get(type_) or type_
        self._out.append({"type": type_, "event_id": new_id("event"), **fields})

    def error(self, error: ProtocolError, client_event_id: str | None = None) -> None:
        self._out.append(
            error_event(
                new_id("event"),
                error.code,
                error.message,
                client_event_id=client_event_id,
                param=error.param,
            )
        )

    def announce_item(self, item: Item, previous: str | None, done: bool = True) -> None:
        """`conversation.item.added` (and, for an item that is whole already, `.done`)."""
        rendered = render_item(item, self.beta)
        self.emit("conversation.item.added", item=rendered, previous_item_id=previous)
        if done:
            self.emit("conversation.item.done", item=rendered, previous_item_id=previous)

    def event(self, event: dict[str, Any]) -> None:
        """An event built elsewhere (an error event with its own wording)."""
        self._out.append(event)

    def act(self, action: Action) -> None:
        self._out.append(action)

    def drain(self) -> list[Output]:
        out, self._out = self._out, []
        return out
