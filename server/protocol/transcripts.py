"""User transcripts: the events that report how a user audio item is being written down.

Transcription runs off the event loop (the `Transcribe` action); its results come back here.
A transcript for an item a merge took back is dropped: the merged turn's covers its words.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from server.protocol.conversation import Conversation
from server.protocol.errors import ErrorCode, error_object
from server.protocol.items import Item
from server.protocol.outputs import Outputs


class Transcripts:
    def __init__(
        self,
        outputs: Outputs,
        conversation: Conversation,
        withdrawn: Callable[[], Collection[str]],  # item ids a merge took back
    ) -> None:
        self.outputs = outputs
        self.conversation = conversation
        self.withdrawn = withdrawn

    def delta(self, item_id: str, text: str) -> None:
        if self._item(item_id) is not None and text:
            self.outputs.emit(
                "conversation.item.input_audio_transcription.delta",
                item_id=item_id,
                content_index=0,
                delta=text,
            )

    def done(self, item_id: str, transcript: str, usage: dict[str, Any]) -> None:
        item = self._item(item_id)
        if item is not None:
            item.text = transcript.strip()
            self.outputs.emit(
                "conversation.item.input_audio_transcription.completed",
                item_id=item_id,
                content_index=0,
                transcript=item.text,
                usage=usage,
            )

    def failed(self, item_id: str, message: str) -> None:
        if self._item(item_id) is not None:
            self.outputs.emit(
                "conversation.item.input_audio_transcription.failed",
                item_id=item_id,
                content_index=0,
                error=error_object(ErrorCode.TRANSCRIPTION_FAILED, message),
            )

    def _item(self, item_id: str) -> Item | None:
        if item_id in self.withdrawn():
            return None
        return self.conversation.get(item_id)
