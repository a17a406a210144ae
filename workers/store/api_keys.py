"""API keys: random, shown once, stored only as SHA-256, revocable."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time

from sqlalchemy import select, update

from aijobs.store.db import Database
from aijobs.store.models import ApiKey, utcnow

KEY_PREFIX = "aij_"


def hash_key(key: str) -> str:
    """The stored form of a key. Keys carry 256 random bits, so a plain hash is enough."""
    return hashlib.sha256(key.encode()).hexdigest()


class KeyRepository:
    """Creates, lists, revokes and checks API keys."""

    def __init__(self, db: Database, *, cache_ttl_s: float = 10.0) -> None:
        self.db = db
        self._cache_ttl_s = cache_ttl_s
        self._cache: dict[str, tuple[str | None, float]] = {}
        self._lock = threading.Lock()

    def create(self, tenant: str, name: str = "") -> tuple[ApiKey, str]:
        """A new key for ``tenant``: the row, and the key itself (shown this once)."""
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
            done = session.execute(stmt).rowcount == 1  # type: ignore[attr-defined]
        with self._lock:
            self._cache.clear()
        return done

    def tenant_for(self, key: str) -> str | None:
        """The tenant of a live key, or None. Answers are cached for a few seconds,
        so a revocation takes effect within ``cache_ttl_s``."""
        if not key.startswith(KEY_PREFIX):
            return None
        digest = hash_key(key)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        with self.db.session() as session:
            row = session.scalars(
                select(ApiKey).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None))
            ).first()
        tenant = (
            row.tenant if row is not None and hmac.compare_digest(row.key_hash, digest) else None
        )
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (tenant, now + self._cache_ttl_s)
        return tenant
