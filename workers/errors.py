"""The errors aijobs raises on purpose, in one tree, and the codes a job's ``error`` carries.

The codes are shared by the API (its answers), the workers (a job's ``error.code``) and
the client; a provider's own code (``billing_hard_limit_reached``) or HTTP status
(``provider_http_502``) passes through as it came, so ``JobError.code`` is a string and
this enum names the codes aijobs itself decides.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """Why a job failed (or waits), as ``error.code`` and ``status.reason`` say it."""

    # The provider's answer.
    RATE_LIMITED = "rate_limited"
    INSUFFICIENT_QUOTA = "insufficient_quota"
    PROVIDER_TIMEOUT = "provider_timeout"
    PROVIDER_UNREACHABLE = "provider_unreachable"
    STREAM_INTERRUPTED = "stream_interrupted"
    PROVIDER_ERROR = "provider_error"
    BAD_REQUEST = "bad_request"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    # What the model said.
    REFUSAL = "refusal"
    LENGTH = "length"
    CONTENT_FILTER = "content_filter"
    INVALID_OUTPUT = "invalid_output"
    # The job system.
    TIMEOUT = "timeout"
    POISON = "poison"
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"
    INFRASTRUCTURE = "infrastructure_unavailable"
    INTERNAL_ERROR = "internal_error"
    WORKER_SHUTDOWN = "worker_shutdown"
    BUDGET_EXCEEDED = "budget_exceeded"
    RATE_LIMIT_WAIT = "rate_limit"


def provider_http_code(status: int) -> str:
    """The code of a provider's HTTP error without a more specific one."""
    return f"provider_http_{status}"


class AijobsError(Exception):
    """Base of every error aijobs raises on purpose."""


class ConfigurationError(AijobsError, ValueError):
    """Raised when the configuration is unusable (a missing URL, limits that collide)."""


class Refused(AijobsError):
    """Raised when a request cannot be served as asked. The API turns every one of these
    into its answer in one place (``aijobs.api.errors``): ``status`` and ``detail``, and
    ``Retry-After`` when ``retry_after_s`` is set."""

    status = 400

    def __init__(self, detail: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after_s = retry_after_s


class InvalidInput(Refused, ValueError):
    """Raised when input breaks a rule the models alone cannot check (422)."""

    status = 422


class TooLarge(Refused):
    """Raised when a body is larger than its kind may be (413)."""

    status = 413


class LimitReached(Refused):
    """Raised when a tenant is over one of its limits; try again later (429)."""

    status = 429


class NotFound(Refused):
    """Raised when there is no such thing for this caller (404, alike for an unknown id
    and another tenant's)."""

    status = 404


class Conflict(Refused):
    """Raised when a request contradicts an earlier one (409)."""

    status = 409


class JobFailed(AijobsError):
    """Raised when an attempt ends with an error; says whether trying again can help."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.status = status
        self.retry_after_s = retry_after_s
        #: What the provider said the failed call had cost so far, if it said.
        self.usage: dict[str, int] | None = None

    def as_error(self) -> dict[str, Any]:
        """The job ``error`` object for this failure."""
        return {"code": self.code, "message": self.message, "retryable": self.retryable}


class ProviderError(JobFailed):
    """Raised when a provider call fails (classified: see ``aijobs.providers.errors``)."""


class AttemptStopped(AijobsError):
    """Raised inside an attempt that must stop without an outcome of its own."""


class Superseded(AttemptStopped):
    """Raised when a newer delivery owns the job (its fence or its lease): stop quietly."""


class HandOff(AttemptStopped):
    """Raised when the worker shuts down: the job goes back to the queue, not a failure."""


class WaitForBudget(AttemptStopped):
    """Raised when the fleet's budget for the model is spent for longer than is worth
    holding a worker slot: the job waits in the queue for ``wait_s``."""

    def __init__(self, wait_s: float) -> None:
        super().__init__(f"budget spent for {wait_s:.1f}s")
        self.wait_s = wait_s
