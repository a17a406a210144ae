"""What both clients are built from: the URL, the key and the timeouts, with the
environment's defaults (read here and only here)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import httpx

from aijobs import __version__

DEFAULT_URL = "http://127.0.0.1:8000"
USER_AGENT = f"aijobs-python/{__version__}"


def http_options(
    base_url: str | None,
    api_key: str | None,
    *,
    timeout_s: float,
    read_timeout_s: float,
    headers: Mapping[str, str] | None,
) -> dict[str, Any]:
    """Keyword arguments for ``httpx.Client`` / ``httpx.AsyncClient``.

    ``base_url`` defaults to AIJOBS_URL (else http://127.0.0.1:8000), ``api_key`` to
    AIJOBS_API_KEY; an empty value counts as unset. ``read_timeout_s`` is the longest
    silence tolerated on a read: event streams send a keep-alive every ~15 s.
    """
    url = base_url or os.environ.get("AIJOBS_URL") or DEFAULT_URL
    key = api_key or os.environ.get("AIJOBS_API_KEY") or ""
    merged = {"User-Agent": USER_AGENT, **(headers or {})}
    if key:
        merged["Authorization"] = f"Bearer {key}"
    return {
        "base_url": url,
        "headers": merged,
        "timeout": httpx.Timeout(timeout_s, read=read_timeout_s),
    }
