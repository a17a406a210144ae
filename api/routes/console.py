"""The job console: a static page (HTML, CSS, ES modules) served under a strict CSP.

The console is plain files in ``aijobs/api/console/``: no build step, no CDN, no inline
script or style, so the policy below can forbid everything but this origin. It talks to the
API from the same origin, so it needs no CORS setting.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Response, status

router = APIRouter(tags=["console"], include_in_schema=False)

#: Only this origin, for scripts, styles, fetches and the EventSource alike; nothing may
#: frame the page (clickjacking a cancel button), and no ``<base>`` can redirect its paths.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "connect-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'none'",
        # The console builds every node with textContent and createElement; refusing
        # string-to-DOM sinks (innerHTML and friends) makes that a rule, not a habit.
        "require-trusted-types-for 'script'",
    )
)

_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

_SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Asset names carry no content hash, so a cached copy must be revalidated on every load
    # (a 304 against the ETag): an upgraded API never runs with last release's app.js.
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True, slots=True)
class Asset:
    """One console file, read once per process."""

    body: bytes
    media_type: str
    etag: str


@cache
def console_assets() -> dict[str, Asset]:
    """The console's files by name (read on first use, then kept: they never change)."""
    assets: dict[str, Asset] = {}
    for entry in (resources.files("aijobs.api") / "console").iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in _MEDIA_TYPES:
            body = entry.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            assets[entry.name] = Asset(body, _MEDIA_TYPES[suffix], etag)
    return assets


def _serve(name: str, if_none_match: str | None) -> Response:
    asset = console_assets().get(name)
    if asset is None or name == "index.html":  # the page itself is /console, only there
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    return _answer(asset, if_none_match)


def _answer(asset: Asset, if_none_match: str | None) -> Response:
    headers = {**_SECURITY_HEADERS, "ETag": asset.etag}
    if if_none_match and asset.etag in (tag.strip() for tag in if_none_match.split(",")):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


IfNoneMatch = Annotated[str | None, Header(alias="If-None-Match")]


@router.api_route("/console", methods=["GET", "HEAD"])
def console_page(if_none_match: IfNoneMatch = None) -> Response:
    """The console's single page (sign in, jobs, a job's live stream, submit)."""
    return _answer(console_assets()["index.html"], if_none_match)


@router.api_route("/console/{name}", methods=["GET", "HEAD"])
def console_file(name: str, if_none_match: IfNoneMatch = None) -> Response:
    """One of the console's scripts, its style sheet or its icon."""
    return _serve(name, if_none_match)
