"""API keys: random, shown once, stored only as SHA-256, revocable."""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, select, update

from aijobs.errors import ConfigurationError
from aijobs.store.db import Database
from aijobs.store.models import ApiKey, utcnow

KEY_PREFIX = "aij_"


def hash_key(key: str) -> str:
    """The stored form of a key. Keys carry 256 random bits, so a plain hash is enough."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class KeyOwner:
    """Who a live key belongs to: its tenant and the key's id (tokens name the id)."""

    tenant: str
    key_id: str


class KeyRepository:
    """Creates, lists, revokes and checks API keys.

    Lookups are cached (hits and misses alike) for ``cache_ttl_s``, least recently used
    first out, so a flood of wrong keys costs a dictionary lookup each, not a query.
    """

    def __init__(
        self, db: Database, *, cache_ttl_s: float = 10.0, cache_size: int = 10_000
    ) -> None:
        self.db = db
        self._cache_ttl_s = cache_ttl_s
        self._cache_size = cache_size
        self._cache: OrderedDict[str, tuple[KeyOwner | None, float]] = OrderedDict()
        self._lock = threading.Lock()

    def create(self, tenant: str, name: str = "") -> tuple[ApiKey, str]:
        """A new key for ``tenant``: the row, and the key itself (shown this once)."""
        check_tenant_name(tenant)
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        row = ApiKey(
            id=secrets.token_hex(8),
            tenant=tenant,
            name=name,
            prefix=key[:12],
            key_hash=hash_key(key),
            created_at=utcnow(),
        )
        with self.db.session() as session:
            session.add(row)
        return row, key

    def list(self, tenant: str | None = None) -> list[ApiKey]:
        """Keys (never their secret), newest first."""
        query = select(ApiKey).order_by(ApiKey.created_at.desc())
        if tenant:
            query = query.where(ApiKey.tenant == tenant)
        with self.db.session() as session:
            return list(session.scalars(query))

    def revoke(self, key_id: str) -> bool:
        """Revoke a key by id; False if there is no such live key."""
        stmt = (
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        with self.db.session() as session:
            # An UPDATE executes to a CursorResult (Session.execute is typed for any statement).
            done = cast(CursorResult[Any], session.execute(stmt)).rowcount == 1
        with self._lock:
            self._cache.clear()  # this process sees it now; others within the TTL
        return done

    def owner_of(self, key: str) -> KeyOwner | None:
        """The owner of a live key, or None (cached, so a revocation takes effect within
        ``cache_ttl_s``)."""
        if not key.startswith(KEY_PREFIX) or len(key) > 200:
            return None
        digest = hash_key(key)
        cached = self._cached(digest)
        if cached is not False:
            return cached  # type: ignore[return-value]
        with self.db.session() as session:
            row = session.scalars(
                select(ApiKey).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None))
            ).first()
        owner = KeyOwner(row.tenant, row.id) if row is not None else None
        self._remember(digest, owner)
        return owner

    def cached_owner(self, key: str) -> KeyOwner | bool | None:
        """From memory only: the owner, None for a key known to be wrong, False if unknown."""
        if not key.startswith(KEY_PREFIX) or len(key) > 200:
            return None
        return self._cached(hash_key(key))

    def is_live(self, key_id: str) -> bool:
        """Whether the key with this id is still live (cached like lookups)."""
        slot = f"id:{key_id}"
        cached = self._cached(slot)
        if cached is not False:
            return cached is not None
        with self.db.session() as session:
            row = session.scalars(
                select(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
            ).first()
        owner = KeyOwner(row.tenant, row.id) if row is not None else None
        self._remember(slot, owner)
        return owner is not None

    def _cached(self, slot: str) -> KeyOwner | bool | None:
        now = time.monotonic()
        with self._lock:
            entry = self._cache.get(slot)
            if entry is None or entry[1] <= now:
                return False
            self._cache.move_to_end(slot)
            return entry[0]

    def _remember(self, slot: str, owner: KeyOwner | None) -> None:
        with self._lock:
            self._cache[slot] = (owner, time.monotonic() + self._cache_ttl_s)
            self._cache.move_to_end(slot)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)


_TENANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")


def check_tenant_name(tenant: str) -> None:
    """Tenants are names in queue keys and metric labels: letters, digits, ``._@-``."""
    if not _TENANT_NAME.match(tenant):
        raise ConfigurationError(
            f"tenant name {tenant!r}: 1-100 letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit"
        )
