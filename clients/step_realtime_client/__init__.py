"""Python client for realtime speech-to-speech servers speaking the OpenAI Realtime protocol,
with the reasoning extension events of step-realtime (`response.reasoning_text.*`), or GPT-Live
(`LiveClient`)."""

from step_realtime_client.audio import AudioFileError, load_audio, to_wire, write_wav
from step_realtime_client.client import DEFAULT_URL, Backoff, RealtimeClient, SpeechClient
from step_realtime_client.client_secrets import mint_client_secret, mint_client_secret_sync
from step_realtime_client.dialects import DIALECTS, client_for, dialect_url
from step_realtime_client.errors import (
    AuthenticationError,
    ConnectionLost,
    NoSpeechDetected,
    RealtimeError,
    ServerError,
    ServerRefused,
)
from step_realtime_client.events import ServerEvent, parse_event
from step_realtime_client.gpt_live import DEFAULT_LIVE_URL, LiveClient
from step_realtime_client.reply import Reply, Timings, playback_underruns

__all__ = [
    "DEFAULT_LIVE_URL",
    "DEFAULT_URL",
    "DIALECTS",
    "AudioFileError",
    "AuthenticationError",
    "Backoff",
    "ConnectionLost",
    "LiveClient",
    "NoSpeechDetected",
    "RealtimeClient",
    "RealtimeError",
    "Reply",
    "ServerError",
    "ServerEvent",
    "ServerRefused",
    "SpeechClient",
    "Timings",
    "client_for",
    "dialect_url",
    "load_audio",
    "mint_client_secret",
    "mint_client_secret_sync",
    "parse_event",
    "playback_underruns",
    "to_wire",
    "write_wav",
]
__version__ = "0.1.0"
