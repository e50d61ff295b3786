"""The conversation store: the session's items in order, and the limit on how many it holds."""

from __future__ import annotations

from collections.abc import Collection

from server.protocol.errors import ErrorCode, ProtocolError
from server.protocol.items import Item


class Conversation:
    def __init__(self, max_items: int) -> None:
        self.items: list[Item] = []
        self.max_items = max_items

    @property
    def full(self) -> bool:
        return len(self.items) >= self.max_items

    @property
    def last_id(self) -> str | None:
        return self.items[-1].id if self.items else None

    def get(self, item_id: str) -> Item | None:
        return next((item for item in self.items if item.id == item_id), None)

    def index_of(self, item_id: str, param: str, code: ErrorCode) -> int:
        """The item's position; a client's unknown id is its error `code` naming `param`."""
        for index, item in enumerate(self.items):
            if item.id == item_id:
                return index
        raise ProtocolError(code, f"no item with id {item_id!r} in the conversation", param)

    def append(self, item: Item) -> str | None:
        """Add `item` last; returns the id of the item before it."""
        previous = self.last_id
        self.items.append(item)
        return previous

    def insert(self, item: Item, previous_item_id: str | None) -> str | None:
        """Add `item` after `previous_item_id` ("root": first; None: last); returns the id of
        the item before it."""
        position = len(self.items)
        if previous_item_id == "root":
            position = 0
        elif previous_item_id is not None:
            code = ErrorCode.ITEM_CREATE_INVALID_PREVIOUS_ITEM_ID
            position = self.index_of(previous_item_id, "previous_item_id", code) + 1
        self.items.insert(position, item)
        return self.items[position - 1].id if position else None

    def remove(self, item_id: str) -> bool:
        """Take the item out; False if it was not there."""
        kept = [item for item in self.items if item.id != item_id]
        removed = len(kept) < len(self.items)
        self.items = kept
        return removed

    def without(self, hidden: Collection[str]) -> list[Item]:
        return [item for item in self.items if item.id not in hidden]

    def check_room(self) -> None:
        if self.full:
            raise self.full_error()

    def full_error(self) -> ProtocolError:
        return ProtocolError(
            ErrorCode.CONVERSATION_FULL,
            f"the conversation holds {len(self.items)} items, the limit of this session; "
            "delete old items (conversation.item.delete) to add more",
        )
