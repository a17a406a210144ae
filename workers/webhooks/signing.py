"""Standard Webhooks signatures (https://www.standardwebhooks.com).

Each request carries ``webhook-id`` (one per event, the same on every retry: receivers
deduplicate by it), ``webhook-timestamp`` (seconds, this attempt's) and
``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` keyed with the
base64-decoded part of a ``whsec_…`` secret. While a secret is rotated, the setting holds
the new and the old (space-separated): each request is signed with both, and a receiver
that knows either accepts it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"
#: The spec's advice on key sizes.
MIN_KEY_BYTES, MAX_KEY_BYTES = 24, 64


class SecretInvalid(ValueError):
    """Raised when AIJOBS_WEBHOOK_SECRET is not a list of ``whsec_<base64>`` secrets."""


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` and the base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def parse_secrets(text: str) -> list[bytes]:
    """The signing keys in ``text``: ``whsec_<base64>``, space-separated, newest first."""
    keys: list[bytes] = []
    for item in text.split():
        if not item.startswith(SECRET_PREFIX):
            raise SecretInvalid("AIJOBS_WEBHOOK_SECRET: each secret starts with whsec_")
        encoded = item.removeprefix(SECRET_PREFIX)
        try:  # padding is optional, as the spec's libraries accept
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise SecretInvalid("AIJOBS_WEBHOOK_SECRET: whsec_ then base64, please") from None
        if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
            raise SecretInvalid(
                f"AIJOBS_WEBHOOK_SECRET: a key of {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes "
                f"(this one has {len(key)})"
            )
        keys.append(key)
    if not keys:
        raise SecretInvalid("AIJOBS_WEBHOOK_SECRET is empty")
    return keys


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature of a message."""
    signed = b".".join((msg_id.encode(), str(timestamp).encode(), body))
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class Signer:
    """Signs webhook requests with every configured key."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise SecretInvalid("no webhook signing key")
        self._keys = list(keys)

    @classmethod
    def from_secret(cls, text: str) -> Signer:
        """A signer for the value of AIJOBS_WEBHOOK_SECRET."""
        return cls(parse_secrets(text))

    def headers(self, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
        """The three Standard Webhooks headers of one attempt."""
        signatures = " ".join(signature(key, msg_id, timestamp, body) for key in self._keys)
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signatures,
        }
