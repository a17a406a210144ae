"""Who is calling: API keys checked before a request's body is read, cheaply.

Bootstrap keys (``AIJOBS_API_KEYS``) are looked up by their SHA-256, database keys
through the key repository's cache. A client that keeps presenting wrong keys is slowed
down per address (``AIJOBS_KEY_FAILURES_PER_S``), so guessing costs the guesser, not the
store.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass

from aijobs.settings import Settings
from aijobs.store.api_keys import KeyOwner, KeyRepository

#: The key id of a bootstrap key: a prefix of its hash (tokens name it; it is no secret).
BOOTSTRAP_ID_PREFIX = "boot-"
#: ``Authenticator.known``'s answer when only the store knows.
MISS = object()


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller."""

    tenant: str
    key_id: str


class Authenticator:
    """Checks keys, remembers who keeps failing."""

    def __init__(self, settings: Settings, keys: KeyRepository) -> None:
        self._keys = keys
        self._bootstrap: dict[str, Caller] = {}
        for key, tenant in settings.tenant_by_key.items():
            digest = hashlib.sha256(key.encode()).hexdigest()
            self._bootstrap[digest] = Caller(tenant, BOOTSTRAP_ID_PREFIX + digest[:16])
        self._bootstrap_ids = {c.key_id for c in self._bootstrap.values()}
        self._failures_per_s = settings.key_failures_per_s
        self._failures: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def caller(self, key: str) -> Caller | None:
        """The caller a key belongs to, or None (may read the store: call off the loop)."""
        known = self.known(key)
        if known is not MISS:
            return known  # type: ignore[return-value]
        owner: KeyOwner | None = self._keys.owner_of(key)
        return Caller(owner.tenant, owner.key_id) if owner is not None else None

    def known(self, key: str) -> Caller | object | None:
        """The caller, or None for a key known to be wrong, from memory only; ``MISS`` when
        only the store can tell (then call ``caller`` off the event loop)."""
        if not key or len(key) > 512:
            return None
        found = self._bootstrap.get(hashlib.sha256(key.encode("utf-8", "replace")).hexdigest())
        if found is not None:
            return found
        cached = self._keys.cached_owner(key)
        if cached is False:
            return MISS
        return Caller(cached.tenant, cached.key_id) if isinstance(cached, KeyOwner) else None

    def key_is_live(self, key_id: str) -> bool:
        """Whether the key that issued a token still works (a revoked key's tokens die)."""
        if key_id.startswith(BOOTSTRAP_ID_PREFIX):
            return key_id in self._bootstrap_ids
        return self._keys.is_live(key_id)

    def throttled(self, client: str) -> bool:
        """True while ``client`` is over its budget of failed key checks."""
        if not self._failures_per_s:
            return False
        entry = self._failures.get(client)
        if entry is None:
            return False
        since, count = entry
        if time.monotonic() - since > 1.0:
            del self._failures[client]
            return False
        return count >= self._failures_per_s

    def failed(self, client: str) -> None:
        """Count a failed check for ``client`` (a per-second window)."""
        now = time.monotonic()
        since, count = self._failures.get(client, (now, 0))
        if now - since > 1.0:
            since, count = now, 0
        self._failures[client] = (since, count + 1)
        self._failures.move_to_end(client)
        while len(self._failures) > 10_000:
            self._failures.popitem(last=False)


def bearer_key(authorization: str | None) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header value."""
    scheme, _, key = (authorization or "").partition(" ")
    return (key.strip() or None) if scheme.lower() == "bearer" else None
