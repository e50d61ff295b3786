"""API keys and short-lived client secrets.

A request carries its key as `Authorization: Bearer KEY`, or (browsers, which cannot set
headers on a WebSocket) as the subprotocol `openai-insecure-api-key.KEY`. Client secrets are
minted with an API key and carry the session configuration they were minted with. Each key
may have at most `max_per_key` secrets outstanding (unexpired), so that a key holder cannot fill
the server's memory with them (docs/security.md).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

KEY_SUBPROTOCOL_PREFIX = "openai-insecure-api-key."
CLIENT_SECRET_PREFIX = "ek_"
MIN_SECRET_TTL_SECONDS = 10  # OpenAI's bounds for expires_after.seconds
MAX_SECRET_TTL_SECONDS = 7200
DEFAULT_MAX_SECRETS_PER_KEY = 64  # a browser client needs one per session it opens
OPEN_OWNER = ""  # the owner of secrets minted on a server without keys


class TooManySecrets(Exception):
    """The minting key already has its limit of secrets outstanding."""


@dataclass(frozen=True)
class Grant:
    kind: str  # "api_key", "client_secret" or "open" (no keys configured)
    session: dict[str, Any] | None = None  # a client secret's session configuration


@dataclass
class _Secret:
    expires_at: float
    session: dict[str, Any] | None
    owner: str  # the API key that minted it


class KeyStore:
    def __init__(
        self,
        api_keys: Iterable[str],
        clock: Callable[[], float] = time.time,
        max_per_key: int = DEFAULT_MAX_SECRETS_PER_KEY,
    ) -> None:
        self._keys = [key.encode() for key in api_keys if key]
        self._secrets: dict[str, _Secret] = {}
        self.clock = clock  # injectable, so tests can let secrets expire
        self.max_per_key = max_per_key

    @property
    def required(self) -> bool:
        return bool(self._keys)

    def is_api_key(self, token: str | None) -> bool:
        if token is None:
            return False
        given = token.encode()
        # compare against every key, so timing says nothing about which one is close
        return any([hmac.compare_digest(given, key) for key in self._keys])

    def check(self, token: str | None) -> Grant | None:
        """The grant a token gives, or None. Without configured keys everyone gets `open`."""
        if token is not None and token.startswith(CLIENT_SECRET_PREFIX):
            self._purge()
            secret = self._secrets.get(token)
            if secret is not None:
                return Grant("client_secret", secret.session)
        if self.is_api_key(token):
            return Grant("api_key")
        return None if self.required else Grant("open")

    def mint(
        self, ttl_seconds: int, session: dict[str, Any] | None, owner: str = OPEN_OWNER
    ) -> tuple[str, int]:
        """A new client secret and its expiry (Unix seconds), minted by the API key `owner`.
        Raises `TooManySecrets` when `owner` has `max_per_key` secrets outstanding."""
        self._purge()
        if self.outstanding(owner) >= self.max_per_key:
            raise TooManySecrets(
                f"this key has {self.max_per_key} client secrets outstanding, the limit; "
                "wait for some to expire, or mint them with a shorter expires_after.seconds"
            )
        value = CLIENT_SECRET_PREFIX + secrets.token_urlsafe(24)
        expires_at = int(self.clock()) + ttl_seconds
        self._secrets[value] = _Secret(expires_at, session, owner)
        return value, expires_at

    def outstanding(self, owner: str) -> int:
        """Unexpired secrets minted by `owner`."""
        return sum(1 for secret in self._secrets.values() if secret.owner == owner)

    def _purge(self) -> None:
        now = self.clock()
        for value in [v for v, s in self._secrets.items() if s.expires_at <= now]:
            del self._secrets[value]


def token_from(headers: Mapping[str, str], subprotocols: Iterable[str] = ()) -> str | None:
    authorization = headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    for protocol in subprotocols:
        if protocol.startswith(KEY_SUBPROTOCOL_PREFIX):
            return protocol[len(KEY_SUBPROTOCOL_PREFIX) :]
    return None
