"""What a request must pass before anything is written, queued or streamed: the input's
shape and size, the tenant's limits (submissions per second, unfinished jobs, open
readers). Each refusal is an ``aijobs.errors.Refused`` that names what, answered in one
place (``aijobs.api.errors``)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool

from aijobs.api.budgets import check_budget
from aijobs.errors import InvalidInput, LimitReached, TooLarge
from aijobs.jsonsize import deeper_than, json_bytes
from aijobs.kinds.schema import MAX_JSON_DEPTH, SchemaRejected, prepare_schema
from aijobs.schemas import (
    DEFAULT_PRIORITY,
    RESERVED_PROVIDER_OPTIONS,
    SCHEDULING_FIELDS,
    EmbedInput,
    ExtractInput,
    GenerateInput,
)
from aijobs.settings import Settings
from aijobs.webhooks.urls import UrlRejected, check_url

if TYPE_CHECKING:
    from aijobs.api.state import ApiState

JobBody = GenerateInput | ExtractInput | EmbedInput
log = logging.getLogger(__name__)


def _unprocessable(detail: str) -> InvalidInput:
    return InvalidInput(detail)


def check_shape(body: JobBody, settings: Settings) -> None:
    """Bounds on what may nest (metadata, a schema), checked first: nothing after this
    (serialising, hashing, validating) can then run out of stack on a deep value."""
    if deeper_than(body.metadata, settings.max_metadata_depth):
        raise _unprocessable(f"metadata: nested deeper than {settings.max_metadata_depth} levels")
    if isinstance(body, ExtractInput) and deeper_than(body.json_schema, MAX_JSON_DEPTH):
        raise _unprocessable(f"schema: nested deeper than {MAX_JSON_DEPTH} levels")
    options = body.provider_options if isinstance(body, GenerateInput) else None
    if options and deeper_than(options, settings.max_metadata_depth):
        raise _unprocessable(
            f"provider_options: nested deeper than {settings.max_metadata_depth} levels"
        )


def _check_generation(body: GenerateInput, settings: Settings) -> None:
    """The answer's caps, and provider options that would override our own fields."""
    cap = settings.output_cap(body.model)
    if body.max_tokens is not None and body.max_completion_tokens is not None:
        raise _unprocessable("max_completion_tokens: give it or max_tokens, not both")
    for name in ("max_tokens", "max_completion_tokens"):
        value = getattr(body, name)
        if value is not None and value > cap:
            raise _unprocessable(f"{name}: at most {cap} for {body.model}")
    for key in body.provider_options or {}:
        if key in RESERVED_PROVIDER_OPTIONS:
            raise _unprocessable(
                f"provider_options.{key}: set by aijobs itself"
                + (f" (use the field {key})" if key in GenerateInput.model_fields else "")
            )


def check_input(body: JobBody, state: ApiState, tenant: str, *, body_bytes: int) -> None:
    """Sizes and semantics the models cannot check alone (422 naming the field, 413 for a
    body too large for its kind). Runs after the tenant's rate limit was charged."""
    settings = state.settings
    if body.kind != "embed" and body_bytes > settings.max_body_bytes:
        raise TooLarge(
            f"request body exceeds {settings.max_body_bytes} bytes (only embed jobs may be "
            f"larger, up to {settings.max_jobs_body_bytes})"
        )
    _check_metadata(body.metadata, settings)
    allowed = settings.models_for(tenant)
    if allowed and body.model not in allowed:
        raise _unprocessable(f"model: {body.model!r} is not offered here (one of: "
                             f"{', '.join(allowed[:20])})")  # fmt: skip
    if isinstance(body, GenerateInput):
        _check_generation(body, settings)
        chars = sum(m.text_chars() for m in body.messages)
        if chars > settings.max_input_chars:
            raise _unprocessable(
                f"messages: {chars} characters in all; the limit is {settings.max_input_chars}"
            )
    elif isinstance(body, ExtractInput):
        chars = len(body.text) + len(body.instructions or "")
        if chars > settings.max_input_chars:
            raise _unprocessable(
                f"text: {chars} characters with the instructions; the limit is "
                f"{settings.max_input_chars}"
            )
        if deeper_than(body.json_schema, MAX_JSON_DEPTH):
            raise _unprocessable(f"schema: nested deeper than {MAX_JSON_DEPTH} levels")
        size = json_bytes(body.json_schema)
        if size > settings.max_schema_bytes:
            raise _unprocessable(f"schema: {size} bytes; the limit is {settings.max_schema_bytes}")
        try:
            prepare_schema(body.json_schema)
        except SchemaRejected as exc:
            raise _unprocessable(str(exc)) from None
    elif isinstance(body.input, list):
        if not body.input:
            raise _unprocessable("input: no texts given")
        if len(body.input) > settings.embed_max_inputs:
            raise _unprocessable(
                f"input: at most {settings.embed_max_inputs} texts per job (got {len(body.input)})"
            )


def check_webhook(body: JobBody, settings: Settings, tenant: str) -> str | None:
    """Webhooks: the job's callback URL — its own, else its tenant's default — once it
    passes the URL policy (422 naming ``webhook_url``); None when it has none."""
    url = body.webhook_url or settings.webhook_tenant_urls.get(tenant)
    if url is None:
        return None
    if not settings.webhooks_on:
        raise _unprocessable(
            "webhook_url: webhooks are off here (no secret, or AIJOBS_WEBHOOKS_ENABLED=false)"
        )
    try:
        check_url(url, settings.webhook_allowed_hosts)
    except UrlRejected as exc:
        raise _unprocessable(f"webhook_url: {exc}") from None
    return url


def _check_metadata(meta: dict[str, Any], settings: Settings) -> None:
    if deeper_than(meta, settings.max_metadata_depth):
        raise _unprocessable(f"metadata: nested deeper than {settings.max_metadata_depth} levels")
    size = json_bytes(meta)
    if size > settings.max_metadata_bytes:
        raise _unprocessable(
            f"metadata: {size} bytes as JSON; the limit is {settings.max_metadata_bytes}"
        )


#: A run_at further in the past than this is refused: a clock or a unit is wrong (a
#: little in the past is a client's clock, or a retry: that job runs at once).
MAX_RUN_AT_PAST = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a job may start, and its priority."""

    priority: int = DEFAULT_PRIORITY
    #: Not before this (aware, UTC); None: at once.
    run_at: datetime | None = None

    @property
    def epoch_s(self) -> float | None:
        """``run_at`` as the fair queue takes it."""
        return self.run_at.timestamp() if self.run_at is not None else None


def check_schedule(body: JobBody, settings: Settings, *, now: datetime | None = None) -> Schedule:
    """The job's priority and start time from ``run_at`` or ``delay_s`` (422 naming the
    field for a time too far ahead or behind, or both given)."""
    priority = DEFAULT_PRIORITY if body.priority is None else body.priority
    now = now or datetime.now(UTC)
    horizon_s = settings.max_schedule_ahead_s
    if body.run_at is not None and body.delay_s is not None:
        raise _unprocessable("run_at, delay_s: give one or the other, not both")
    if body.delay_s is not None:
        if body.delay_s > horizon_s:
            raise _unprocessable(
                f"delay_s: at most {horizon_s} seconds ahead (AIJOBS_MAX_SCHEDULE_AHEAD_S)"
            )
        run_at = now + timedelta(seconds=body.delay_s) if body.delay_s > 0 else None
        return Schedule(priority, run_at)
    if body.run_at is None:
        return Schedule(priority)
    # Compared before it is converted: a far-off time with an offset could not be.
    ahead_s = (body.run_at - now).total_seconds()
    if ahead_s > horizon_s:
        raise _unprocessable(
            f"run_at: at most {horizon_s} seconds ahead (AIJOBS_MAX_SCHEDULE_AHEAD_S); "
            f"{body.run_at.isoformat()} is {ahead_s / 86_400:.0f} days away"
        )
    if -ahead_s > MAX_RUN_AT_PAST.total_seconds():
        raise _unprocessable(
            f"run_at: {body.run_at.isoformat()} is more than a day in the past "
            "(omit run_at to start at once)"
        )
    return Schedule(priority, body.run_at.astimezone(UTC))


def job_payload(body: JobBody) -> tuple[dict[str, Any], dict[str, Any]]:
    """What a job row stores as its input (the body without metadata and scheduling,
    which have columns of their own), and what its Idempotency-Key hash covers: the
    input plus the scheduling fields as given (a retry of ``delay_s=60`` a second later
    is the same request)."""
    payload = body.model_dump(mode="json", by_alias=True, exclude={"metadata", *SCHEDULING_FIELDS})
    given = body.model_dump(mode="json", include=set(SCHEDULING_FIELDS), exclude_none=True)
    return payload, payload | given


async def check_tenant_limits(state: ApiState, tenant: str, jobs: int = 1) -> None:
    """Per-tenant submission rate and unfinished jobs (429 with Retry-After), for ``jobs``
    new jobs: one Redis round trip, and SQL at most once a second per tenant."""
    await check_submit_rate(state, tenant, jobs)
    settings = state.settings
    if settings.tenant_max_active_jobs:
        cap = settings.tenant_max_active_jobs
        active = await state.active.current(tenant, limit=cap - jobs + 1)
        if active + jobs > cap:
            raise too_many_unfinished(settings, active)
    await check_budget(state, tenant)  # 402 / 429: its budget is spent


def too_many_unfinished(settings: Settings, active: int) -> LimitReached:
    """The refusal of a job over ``AIJOBS_TENANT_MAX_ACTIVE_JOBS``."""
    return LimitReached(
        f"too many unfinished jobs: {active} (the limit is "
        f"{settings.tenant_max_active_jobs}); wait for some to finish",
        retry_after_s=5,
    )


async def check_submit_rate(state: ApiState, tenant: str, charges: int = 1) -> None:
    """The tenant's submissions per second, ``charges`` of them (a batch is one
    submission: its jobs count against the unfinished-jobs cap): 429 with Retry-After."""
    settings = state.settings
    if settings.tenant_submits_per_s:
        try:
            wait_s = 0.0
            for _ in range(charges):
                wait_s = await state.submit_limiter.acquire_async(tenant, 0)
                if wait_s > 0:
                    break
        except (RedisError, OSError) as exc:
            # Without Redis the rate cannot be checked; the job is still recorded and
            # will be queued later, so let it in rather than refuse a durable write.
            log.warning("submission rate not checked (Redis unavailable: %s)", exc)
            wait_s = 0.0
        if wait_s > 0:
            raise LimitReached(
                f"too many submissions: at most {settings.tenant_submits_per_s} per second",
                retry_after_s=wait_s,
            )


class ActiveCounts:
    """Each tenant's unfinished jobs: counted in SQL at most once per ``ttl_s``, plus the
    jobs this process admitted since.

    A count per submit would cost a query that grows with the tenant's backlog, on the
    hottest path there is. The cap is admission control, not an invariant: a refusal is
    on a fresh count, and between counts each other API process can overshoot the cap by
    what it admits in ``ttl_s`` (the submission rate bounds that).
    """

    def __init__(self, count: Callable[[str], int], *, ttl_s: float = 1.0) -> None:
        self._count = count
        self._ttl_s = ttl_s
        #: tenant -> [counted, when (monotonic), admitted since]
        self._seen: dict[str, list[float]] = {}
        self._counting: dict[str, asyncio.Future[int]] = {}

    async def current(self, tenant: str, *, limit: int | None = None) -> int:
        """The tenant's unfinished jobs as best known now; counted afresh if the known
        figure reaches ``limit`` (a refusal is always on a fresh count: jobs that
        finished a moment ago must not keep a tenant out)."""
        seen = self._seen.get(tenant)
        stale = seen is None or time.monotonic() - seen[1] > self._ttl_s
        if stale or (limit is not None and seen is not None and seen[0] + seen[2] >= limit):
            await self._recount(tenant)
            seen = self._seen[tenant]
        assert seen is not None
        return int(seen[0] + seen[2])

    def admitted(self, tenant: str, jobs: int = 1) -> None:
        """``jobs`` new unfinished jobs of ``tenant`` (until the next count sees them)."""
        seen = self._seen.get(tenant)
        if seen is not None:
            seen[2] += jobs

    async def _recount(self, tenant: str) -> None:
        # Requests of one tenant arriving together share one count.
        running = self._counting.get(tenant)
        if running is not None:
            await asyncio.shield(running)
            return
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._counting[tenant] = future
        try:
            counted = await run_in_threadpool(self._count, tenant)
            if len(self._seen) > 10_000:  # tenants come from keys; bound it all the same
                self._seen.clear()
            self._seen[tenant] = [counted, time.monotonic(), 0]
            future.set_result(counted)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: a waiter may not exist
            raise
        finally:
            del self._counting[tenant]


def request_hash(payload: dict[str, Any], meta: dict[str, Any]) -> str:
    """A stable hash of what was asked, to tell a retry from a different request."""
    canonical = json.dumps([payload, meta], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_idempotency_key(key: str | None) -> str | None:
    """A usable Idempotency-Key (1-255 visible ASCII characters), or 422."""
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not all(33 <= ord(c) <= 126 for c in key):
        raise _unprocessable("Idempotency-Key: 1 to 255 visible ASCII characters")
    return key


class ReaderSlots:
    """Counts open SSE/WebSocket readers per tenant (the event loop is the only user)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: Counter[str] = Counter()

    def acquire(self, tenant: str) -> None:
        """Take a slot, or ``LimitReached`` if the tenant holds ``limit`` (0: unlimited)."""
        if self.limit and self._open[tenant] >= self.limit:
            raise LimitReached(
                f"too many open event readers: at most {self.limit} per tenant",
                retry_after_s=5,
            )
        self._open[tenant] += 1

    def release(self, tenant: str) -> None:
        """Give a slot back."""
        self._open[tenant] -= 1
        if self._open[tenant] <= 0:
            del self._open[tenant]
