"""Turn whatever a provider call raised into a classified ``ProviderError``.

429 rate_limit_exceeded waits for the provider's hint; quota and billing errors
and other 4xx are terminal; 408/409/5xx, timeouts, connection errors and cut
streams are retryable.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import openai

from aijobs.errors import ErrorCode, ProviderError, provider_http_code

try:  # openai>=3 ships its own fork of httpx
    import httpx2 as _http
except ImportError:  # pragma: no cover - older openai releases use httpx
    import httpx as _http  # type: ignore[no-redef]

TransportError = _http.TransportError

_TERMINAL_429_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached"})
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration_s(text: str) -> float | None:
    """Parse OpenAI reset durations like ``1s``, ``6m0s``, ``12ms``, ``1h2m3.5s``."""
    text = text.strip()
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNIT_S[match.group(2)]
        pos = match.end()
    return total if pos == len(text) else None


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """How long the provider asked us to wait: retry-after-ms, retry-after, x-ratelimit-reset-*."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            pass  # an HTTP date: rare from these providers; fall through
    waits = [
        parse_duration_s(headers[name])
        for name in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")
        if headers.get(name)
    ]
    known = [w for w in waits if w is not None]
    return max(known) if known else None


def classify(exc: BaseException) -> ProviderError:
    """The ``ProviderError`` for an exception raised by the SDK or the transport."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, openai.APITimeoutError):
        return ProviderError(
            ErrorCode.PROVIDER_TIMEOUT, "the provider did not answer in time", retryable=True
        )
    if isinstance(exc, openai.APIConnectionError):
        return ProviderError(
            ErrorCode.PROVIDER_UNREACHABLE,
            f"could not reach the provider ({type(exc.__cause__ or exc).__name__})",
            retryable=True,
        )
    if isinstance(exc, openai.APIStatusError):
        return _classify_status(exc)
    if isinstance(exc, TransportError):
        return ProviderError(
            ErrorCode.STREAM_INTERRUPTED,
            f"the provider's stream broke off: {type(exc).__name__}",
            retryable=True,
        )
    return ProviderError(ErrorCode.PROVIDER_ERROR, f"{type(exc).__name__}", retryable=False)


_STATUS_CODES = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
}


def _classify_status(exc: openai.APIStatusError) -> ProviderError:
    status = exc.status_code
    code = exc.code or ""
    # The provider's own words, not the SDK's "Error code: 400 - {...}" wrapping, with
    # anything that identifies our account taken out (tenants read this message).
    body = exc.body if isinstance(exc.body, dict) else {}
    message = scrub(str(body.get("message") or exc.message))
    request_id = exc.response.headers.get("x-request-id")
    if request_id:
        message = f"{message} (provider request {scrub(request_id)[:64]})"
    if status == 429:
        if code in _TERMINAL_429_CODES or exc.type in _TERMINAL_429_CODES:
            return ProviderError(
                code or ErrorCode.INSUFFICIENT_QUOTA, message, retryable=False, status=status
            )
        wait = retry_after_s(exc.response.headers)
        return ProviderError(
            ErrorCode.RATE_LIMITED,
            message,
            retryable=True,
            status=status,
            retry_after_s=None if wait is None else math.ceil(wait * 1000) / 1000,
        )
    if status in (408, 409) or status >= 500:
        return ProviderError(provider_http_code(status), message, retryable=True, status=status)
    name = _STATUS_CODES.get(status) or provider_http_code(status)
    return ProviderError(name, message, retryable=False, status=status)


# Keys (sk-..., masked or not), organisation and project ids, bearer tokens, emails.
_SECRETS = re.compile(
    r"(?:sk|rk|pk)-[A-Za-z0-9_\-*]{4,}"
    r"|\borg-[A-Za-z0-9]{4,}"
    r"|\bproj_[A-Za-z0-9]{4,}"
    r"|\buser-[A-Za-z0-9]{8,}"
    r"|(?i:bearer)\s+[A-Za-z0-9._\-]{8,}"
    r"|[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}"
)


def scrub(message: str, limit: int = 500) -> str:
    """A provider message with keys and account ids replaced, cut to ``limit`` characters."""
    cleaned = _SECRETS.sub("[redacted]", message)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"
