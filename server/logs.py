"""Structured logs: one JSON object per line, with session and response ids when known.

Never a credential in a log line: every message (and traceback) is passed through `redact`,
which hides query-string values (a browser client may put its key there), bearer tokens, the
key subprotocol and client secrets. Refusals (bad keys, origins, oversized requests) are logged
through `RefusalLog`: at WARNING, at most once per reason per interval, with the count of those
left out, so that a client hammering the door cannot fill the logs. uvicorn's own line for
every WebSocket handshake is dropped (the app logs sessions and refusals itself).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable

CONTEXT_FIELDS = ("session_id", "response_id", "code", "reason", "status", "client", "peer")
REDACTED = "[redacted]"
# Query parameters whose values are safe to log; every other value is hidden.
SAFE_QUERY_PARAMETERS = frozenset({"model", "intent"})
REFUSAL_LOG_INTERVAL_SECONDS = 10.0  # one line per reason per interval at most

_QUERY_VALUE = re.compile(r"([?&][^=&\s\"'#]+)=([^&\s\"'#]*)")
_SECRETS = (
    (re.compile(r"(?i)\b(bearer\s+)[^\s\"',]+"), r"\1" + REDACTED),
    (re.compile(r"(openai-insecure-api-key\.)[^\s\"',]+"), r"\1" + REDACTED),
    (re.compile(r"\b(ek_)[A-Za-z0-9_\-]{8,}"), r"\1" + REDACTED),
)
UVICORN_HANDSHAKE_LINE = '%s - "WebSocket %s"'  # the start of uvicorn's per-handshake line


def redact(text: str) -> str:
    """`text` with credentials hidden (see the module's docstring)."""

    def query(match: re.Match[str]) -> str:
        name = match.group(1)
        return match.group(0) if name[1:] in SAFE_QUERY_PARAMETERS else f"{name}={REDACTED}"

    text = _QUERY_VALUE.sub(query, text)
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry)


class QuietHandshakes(logging.Filter):
    """Drops uvicorn's INFO line for every WebSocket handshake (accepted or refused)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith(UVICORN_HANDSHAKE_LINE))


def quiet_uvicorn() -> None:
    """Install `QuietHandshakes` on uvicorn's error logger (once)."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, QuietHandshakes) for f in logger.filters):
        logger.addFilter(QuietHandshakes())


class RefusalLog:
    """Logs refusals at WARNING, at most once per reason per `interval` seconds."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = REFUSAL_LOG_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._last: dict[str, float] = {}
        self._left_out: dict[str, int] = {}

    def refused(self, reason: str, message: str, peer: str | None = None) -> bool:
        """Log one refusal unless this reason was logged less than `interval` ago; returns
        whether a line was written."""
        now = self.clock()
        last = self._last.get(reason)
        if last is not None and now - last < self.interval:
            self._left_out[reason] = self._left_out.get(reason, 0) + 1
            return False
        left_out = self._left_out.pop(reason, 0)
        self._last[reason] = now
        since = now - last if last is not None else 0.0
        more = f" ({left_out} more like it in the last {since:.0f} s)" if left_out else ""
        extra = {"reason": reason, "peer": peer}
        self.logger.warning("refused: %s%s", message, more, extra=extra)
        return True


def configure_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    quiet_uvicorn()
