"""GPT-Live, OpenAI's successor of the Realtime API, as step-realtime serves it at
`/v1/live/sessions` (the server's docs/live.md):

    async with LiveClient("ws://127.0.0.1:8000/v1/live/sessions", api_key="sk-...") as client:
        reply = await client.ask("question.wav")
        print(reply.transcript, reply.timings.first_packet_latency)

The client starts the session with `session.start` and streams the microphone with
`session.input_audio.append`; the server owns turn-taking and interruption (no commit, no
response.create for speech), so a question is its speech, then silence until the reply has come.
Replies arrive as `session.output_audio.delta` and `session.output_transcript.delta`, paced to
real time by the server; `session.usage.updated` follows each. The wire names no responses and
has no speech events: a reply's timings hold first audio and its end, not the server's split.

Not to be confused with `step_realtime_client.live`, a live conversation (microphone, speaker)
with either dialect.
"""

from __future__ import annotations

import json
from typing import Any

from websockets.asyncio.client import ClientConnection

from step_realtime_client.client import DEFAULT_BACKOFF, Backoff, SpeechClient
from step_realtime_client.reply import LiveReplyCollector, ReplyCollector

DEFAULT_LIVE_URL = "ws://127.0.0.1:8000/v1/live/sessions"
# `session.start` needs a model name; the server echoes it and its served model does the work.
DEFAULT_LIVE_MODEL = "step-audio-r1"


def backend_delegation(
    effort: str | None = None, max_output_tokens: int | None = None
) -> dict[str, Any]:
    """`session.start`'s `delegation` that sets the reasoning effort and the reply cap: GPT-Live
    sets them on its backend (a `responses` delegation), which the server serves with the same
    model as the voice."""
    backend: dict[str, Any] = {"model": DEFAULT_LIVE_MODEL}
    if effort:
        backend["reasoning"] = {"effort": effort}
    if max_output_tokens:
        backend["max_output_tokens"] = max_output_tokens
    return {"type": "responses", "responses": backend}


class LiveClient(SpeechClient):
    """GPT-Live, with the public surface of `RealtimeClient` where GPT-Live has the same:
    `connect`, `ask`, `stream_audio`, `events`, `close`, reconnection."""

    dialect = "live"
    append_event = "session.input_audio.append"
    hears_speech_aloud = False  # speech events stay on the server: no no-speech check

    def __init__(
        self,
        url: str = DEFAULT_LIVE_URL,
        *,
        api_key: str | None = None,
        key_in_subprotocol: bool = False,
        session: dict[str, Any] | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
    ) -> None:
        """`session` is `session.start`'s (model, instructions, audio, delegation, ...),
        sent when connecting and after every reconnection."""
        super().__init__(
            url,
            api_key=api_key,
            key_in_subprotocol=key_in_subprotocol,
            session_settings={"model": DEFAULT_LIVE_MODEL, **(session or {})},
            backoff=backoff,
        )

    async def _start_session(self, ws: ClientConnection) -> None:
        await ws.send(json.dumps({"type": "session.start", "session": self.session_settings}))
        await self._expect(ws, "session.started")

    def _new_collector(self) -> ReplyCollector:
        return LiveReplyCollector()
