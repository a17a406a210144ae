"""Short-lived, job-scoped tokens for browsers (an EventSource cannot send headers).

A token names one job and its tenant, carries an expiry, and is signed with
HMAC-SHA256; it opens that job's event stream and nothing else. It is not a key:
it can sit in a URL, and it stops working at ``expires_at``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a valid token grants, and the key that asked for it (the token dies with it)."""

    job_id: str
    tenant: str
    expires_at: float
    key_id: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """Issues and checks event tokens."""

    def __init__(self, secret: str | None) -> None:
        if not secret:
            log.warning(
                "AIJOBS_TOKEN_SECRET is not set: event tokens work only on the API process "
                "that issued them"
            )
        self._key = (secret or secrets.token_hex(32)).encode()

    def issue(self, job_id: str, tenant: str, key_id: str, ttl_s: int) -> tuple[str, float]:
        """A token for ``job_id`` and when it expires (epoch seconds)."""
        expires = time.time() + ttl_s
        claims = [job_id, tenant, int(expires), key_id]
        body = _b64(json.dumps(claims, separators=(",", ":")).encode())
        return f"{body}.{self._sign(body)}", float(int(expires))

    def check(self, token: str, job_id: str) -> TokenClaims | None:
        """The claims of a valid, unexpired token for ``job_id``; None otherwise (any
        malformed token included: never an error)."""
        if len(token) > 2048 or not token.isascii():
            return None
        body, _, signature = token.partition(".")
        if not body or not hmac.compare_digest(signature.encode(), self._sign(body).encode()):
            return None
        try:
            claimed_job, tenant, expires, key_id = json.loads(_unb64(body))
        except (ValueError, TypeError):
            return None
        if claimed_job != job_id or not isinstance(expires, int) or expires < time.time():
            return None
        return TokenClaims(str(claimed_job), str(tenant), float(expires), str(key_id))

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())
