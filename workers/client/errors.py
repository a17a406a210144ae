"""The errors the client raises: all under ``aijobs.errors.AijobsError``.

httpx's exceptions never leave the client: a refusal becomes ``ApiError``, a network
that stays down through every retry becomes ``ApiUnavailable``.
"""

from __future__ import annotations

from typing import Any

from aijobs.errors import AijobsError, ErrorCode

# What a status means when the answer names no code of its own.
_STATUS_CODES: dict[int, ErrorCode] = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    422: ErrorCode.BAD_REQUEST,
    429: ErrorCode.RATE_LIMITED,
}


class ApiError(AijobsError):
    """Raised when the API answers with an error status (after any retries).

    ``status`` is the HTTP status, ``detail`` the API's message, ``code`` an
    ``ErrorCode`` value when the answer or its status says one (``not_found``,
    ``unauthorized``, ``rate_limited`` ...), ``errors`` the field-by-field list of a 422,
    and ``retry_after_s`` the wait a 429 or 503 asked for.
    """

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        code: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail
        self.code = code if code is not None else _STATUS_CODES.get(status)
        self.errors = errors or []
        self.retry_after_s = retry_after_s


class ApiUnavailable(AijobsError, ConnectionError):
    """Raised when the API could not be reached (refused, reset, timed out) through every
    retry; the httpx error is its ``__cause__``."""


class WaitTimeout(AijobsError, TimeoutError):
    """Raised when a job did not finish within ``timeout_s``; the job itself goes on.

    ``status`` is the last status its events showed (``None`` if none came).
    """

    def __init__(self, job_id: str, timeout_s: float, status: str | None) -> None:
        seen = f" (last seen {status})" if status else ""
        super().__init__(f"job {job_id} did not finish within {timeout_s:g}s{seen}")
        self.job_id = job_id
        self.timeout_s = timeout_s
        self.status = status


class NoResult(AijobsError):
    """Raised when a job's output is asked for and the job has none: it has not
    succeeded (``status`` says what it is), or retention deleted it."""

    def __init__(self, job_id: str, status: str) -> None:
        super().__init__(f"job {job_id} has no result to fetch (status {status})")
        self.job_id = job_id
        self.status = status
