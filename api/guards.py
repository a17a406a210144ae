"""Refuse before reading: the checks that run before a request's body is read.

- The API key of every ``/v1`` request is checked first (from the key cache, or the store
  off the event loop); a request without a valid key is answered 401 without a byte of
  its body read, so an unauthenticated 60 MB upload costs the API nothing. A client that
  keeps failing is answered 429 for a moment.
- Bodies are refused as soon as they pass their limit, declared (Content-Length) or
  streamed (chunked): ``AIJOBS_MAX_JOBS_BODY_BYTES`` for submissions (an embedding job's
  texts are large; the route then holds every other kind to ``AIJOBS_MAX_BODY_BYTES``),
  ``AIJOBS_MAX_BODY_BYTES`` for everything else.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aijobs.api.auth import MISS, Authenticator, Caller, bearer_key

#: The detail of a 503 when the job store does not answer (here and in ``errors``).
STORE_UNAVAILABLE = "the job store is unavailable; try again"
#: Where the verified caller is left for the routes (``request.state``).
CALLER = "aijobs_caller"
#: Routes that also accept a job's event token (``?token=``) instead of a key.
_TOKEN_ROUTES = ("/events",)
_SUBMIT_PATHS = frozenset({"/v1/jobs", "/v1/jobs/batch"})
log = logging.getLogger(__name__)


class BodyTooLarge(Exception):
    """Raised when a request body passes its limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds {limit} bytes")
        self.limit = limit


class RequestGuard:
    """Checks the key, then bounds the body, before the app sees a request."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_jobs_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_jobs_body_bytes = max_jobs_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if path.startswith("/v1/") or path == "/v1":
            refusal = await self._authenticate(scope)
            if refusal is not None:
                await _answer(send, *refusal)
                return
        limit = self.max_body_bytes
        if scope.get("method") == "POST" and path in _SUBMIT_PATHS:
            limit = self.max_jobs_body_bytes
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            # An authenticated client: read (and drop) what it is still sending, up to a
            # bound, so it gets the answer instead of a reset connection mid-upload.
            await _too_large(send, limit, close=int(declared) > 2 * limit)
            if int(declared) <= 2 * limit:
                await _drain(receive)
            return
        if declared in (None, b"0") and b"transfer-encoding" not in headers:
            # No body is coming (a GET, an event stream): nothing to count, so neither
            # receive nor send is wrapped; an SSE reader's every event would otherwise go
            # through one more coroutine here.
            await self.app(scope, receive, send)
            return
        seen = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                scope["aijobs_body_bytes"] = seen
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if not started:
                await _too_large(send, limit)

    async def _authenticate(
        self, scope: Scope
    ) -> tuple[int, str, list[tuple[bytes, bytes]]] | None:
        """None when the request may go on; else the answer (status, detail, headers)."""
        auth: Authenticator = scope["app"].state.aijobs.auth
        headers = dict(scope.get("headers") or [])
        raw = headers.get(b"authorization")
        challenge = [(b"www-authenticate", b"Bearer")]
        if raw is None:
            query = scope.get("query_string", b"")
            if scope.get("path", "").endswith(_TOKEN_ROUTES) and b"token=" in query:
                return None  # the route checks the event token
            return 401, "missing API key: send Authorization: Bearer <key>", challenge
        client = (scope.get("client") or ("?", 0))[0]
        if auth.throttled(client):
            return 429, "too many failed key checks: wait a second", [(b"retry-after", b"1")]
        key = bearer_key(raw.decode("latin-1"))
        caller: Caller | None = None
        if key:
            known = auth.known(key)
            if known is MISS:
                try:
                    caller = await anyio.to_thread.run_sync(auth.caller, key)
                except SQLAlchemyError as exc:
                    # Outside the app's exception handlers: answer what they would, a 503
                    # to try again, not a 500 (and no 401: the key may well be good).
                    log.error("job store error during a key check: %s", type(exc).__name__)
                    return 503, STORE_UNAVAILABLE, []
            elif isinstance(known, Caller):
                caller = known
        if caller is None:
            auth.failed(client)
            return 401, "invalid API key", challenge
        scope.setdefault("state", {})[CALLER] = caller
        return None


async def _answer(
    send: Send,
    status: int,
    detail: str,
    headers: list[tuple[bytes, bytes]] | None = None,
    *,
    close: bool = True,
) -> None:
    raw = json.dumps({"detail": detail}).encode()
    head: list[Any] = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(raw)),
    ]
    if close:  # the body was never read: no next request may follow on this connection
        head.append((b"connection", b"close"))
    head += headers or []
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": raw})


async def _too_large(send: Send, limit: int, *, close: bool = True) -> None:
    await _answer(send, 413, f"request body exceeds {limit} bytes", close=close)


async def _drain(receive: Receive) -> None:
    """Read and drop the rest of a request's body."""
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            return
