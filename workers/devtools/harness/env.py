"""The environment of a child process: explicit, with nothing inherited that changes it."""

from __future__ import annotations

import os
from collections.abc import Mapping

LOOPBACK = "127.0.0.1,localhost"


def child_env(
    *,
    redis_url: str | None = None,
    database_url: str | None = None,
    openai_base_url: str | None = None,
    openai_api_key: str | None = None,
    aijobs: Mapping[str, object] | None = None,
    extra: Mapping[str, str] | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """This process's environment (or ``base``) made fit for a child of a test or benchmark.

    Every inherited ``AIJOBS_`` variable and every proxy setting is dropped (a developer's
    shell must not change what a test checks, and all traffic is to loopback); then the
    given URLs, the ``aijobs`` settings (``{"lease_ttl_s": 2}`` becomes
    ``AIJOBS_LEASE_TTL_S=2``; a name may also carry the prefix already) and ``extra``
    (verbatim) are set.
    """
    source = os.environ if base is None else base
    env = {
        k: v for k, v in source.items() if not k.startswith("AIJOBS_") and "proxy" not in k.lower()
    }
    env["NO_PROXY"] = env["no_proxy"] = LOOPBACK
    env["PYTHONUNBUFFERED"] = "1"
    named = {
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "OPENAI_BASE_URL": openai_base_url,
        "OPENAI_API_KEY": openai_api_key,
    }
    env |= {k: v for k, v in named.items() if v is not None}
    for name, value in (aijobs or {}).items():
        key = name.upper()
        env[key if key.startswith("AIJOBS_") else f"AIJOBS_{key}"] = str(value)
    env |= dict(extra or {})
    return env
