"""OpenAI-shaped error responses and rate-limit headers."""

from __future__ import annotations

import math
from typing import Any

from starlette.responses import JSONResponse

SERVER_ERROR_MESSAGE = "The server had an error while processing your request."
SERVER_ERROR_MESSAGES: dict[int, str] = {
    500: SERVER_ERROR_MESSAGE,
    502: "Bad gateway.",
    503: "The server is overloaded or not ready yet.",
}
"""Messages of the 5xx statuses chaos sends, worded as the real API words them."""
QUOTA_MESSAGE = "You exceeded your current quota, please check your plan and billing details."


def error_body(
    message: str, type_: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """Return ``{"error": {"message", "type", "param", "code"}}`` as the real API does."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_response(
    status: int,
    message: str,
    type_: str,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """Return an error as a JSON response."""
    return JSONResponse(error_body(message, type_, param, code), status, headers=headers)


def invalid_request(
    message: str, param: str | None = None, code: str | None = None
) -> JSONResponse:
    """400 ``invalid_request_error``."""
    return error_response(400, message, "invalid_request_error", param, code)


def format_reset(seconds: float) -> str:
    """Format a wait like OpenAI's ``x-ratelimit-reset-*`` headers: ``12ms``, ``1s``, ``6m0s``."""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    secs_text = f"{secs:.3f}".rstrip("0").rstrip(".")
    out = f"{int(hours)}h" if hours else ""
    if hours or minutes:
        out += f"{int(minutes)}m"
    return f"{out}{secs_text}s"


def rate_limit_headers(retry_after_s: float, limit: int, mode: str = "all") -> dict[str, str]:
    """Headers of a 429: ``retry-after`` (integer ceil), ``retry-after-ms``, ``x-ratelimit-*``.

    ``mode`` selects a subset: ``all``, ``retry_after_only``, ``retry_after_ms_only``,
    ``reset_only`` (the three ``x-ratelimit-*`` headers) or ``none``.
    """
    headers: dict[str, str] = {}
    if mode in ("all", "retry_after_only"):
        headers["retry-after"] = str(max(0, math.ceil(retry_after_s)))
    if mode in ("all", "retry_after_ms_only"):
        headers["retry-after-ms"] = str(max(0, round(retry_after_s * 1000)))
    if mode in ("all", "reset_only"):
        headers["x-ratelimit-limit-requests"] = str(limit)
        headers["x-ratelimit-remaining-requests"] = "0"
        headers["x-ratelimit-reset-requests"] = format_reset(retry_after_s)
    return headers


def rate_limit_response(retry_after_s: float, limit: int, mode: str = "all") -> JSONResponse:
    """429 ``rate_limit_exceeded`` with the headers of :func:`rate_limit_headers`."""
    message = (
        f"Rate limit reached for requests in organization org-simulator on requests per min "
        f"(RPM): Limit {limit}, Used {limit}, Requested 1. Please try again in "
        f"{format_reset(retry_after_s)}. Visit https://platform.openai.com/account/rate-limits "
        f"to learn more."
    )
    return error_response(
        429,
        message,
        "requests",
        None,
        "rate_limit_exceeded",
        rate_limit_headers(retry_after_s, limit, mode),
    )
