"""The ``job_usage`` table: one row per attempt, written with the attempt's transition,
and the sums ``GET /v1/usage`` and the budgets read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Connection, Engine, bindparam, func, insert, select

from aijobs.spend.budgets import Spent
from aijobs.spend.usage import AttemptUsage, job_usage
from aijobs.store.models import JobUsage, utcnow

_u = JobUsage.__table__
_c = _u.c
GroupBy = Literal["model", "day"]


@dataclass(frozen=True, slots=True)
class Billed:
    """An attempt's usage, with the job's tenant and model (what its row needs)."""

    tenant: str
    model: str
    usage: AttemptUsage


# Built once: every finished attempt runs both, and building a statement (and its cache
# key) costs more CPU than running it (see aijobs.store.hot).
_EARLIER = select(
    _c.attempt, _c.prompt_tokens, _c.completion_tokens, _c.cached_tokens, _c.cost_usd,
    _c.estimated,
).where(_c.job_id == bindparam("b_job"), _c.attempt != bindparam("b_attempt"))  # fmt: skip
_INSERT = insert(_u)


def totals_with(conn: Connection, job_id: str, billed: Billed) -> dict[str, Any]:
    """The job record's ``usage``: the attempts recorded before, plus this one."""
    if billed.usage.attempt <= 1:
        return job_usage([billed.usage])  # a first attempt: no row before it
    rows = conn.execute(_EARLIER, {"b_job": job_id, "b_attempt": billed.usage.attempt})
    attempts = [AttemptUsage(*row) for row in rows]
    return job_usage([*attempts, billed.usage])


def insert_attempt(conn: Connection, job_id: str, billed: Billed) -> None:
    """Record one attempt's usage (in the transaction of the attempt's transition)."""
    u = billed.usage
    row = {
        "job_id": job_id, "attempt": u.attempt, "tenant": billed.tenant,
        "model": billed.model, "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens, "cached_tokens": u.cached_tokens,
        "cost_usd": u.cost_usd, "estimated": u.estimated, "created_at": utcnow(),
    }  # fmt: skip
    conn.execute(_INSERT, row)


def spent_since(engine: Engine, tenant: str, since: datetime) -> Spent:
    """What ``tenant`` was billed since ``since`` (the seed of its spend counters)."""
    query = select(
        func.coalesce(func.sum(_c.prompt_tokens + _c.completion_tokens), 0),
        func.coalesce(func.sum(_c.cost_usd), 0.0),
    ).where(_c.tenant == tenant, _c.created_at >= since.astimezone(UTC))
    with engine.connect() as conn:
        tokens, usd = conn.execute(query).one()
    return Spent(int(tokens or 0), float(usd or 0.0))


def usage_report(
    engine: Engine, tenant: str, start: datetime, end: datetime, group_by: GroupBy | None
) -> list[dict[str, Any]]:
    """The tenant's usage in ``[start, end)``: one row in all, or one per model or day."""
    measures = [
        func.coalesce(func.sum(_c.prompt_tokens), 0),
        func.coalesce(func.sum(_c.completion_tokens), 0),
        func.coalesce(func.sum(_c.cached_tokens), 0),
        func.count(func.distinct(_c.job_id)),
        func.count(),
        func.sum(_c.cost_usd),
    ]
    # SQLite compares the stored UTC text: the bounds must be UTC too.
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    where = (_c.tenant == tenant, _c.created_at >= start, _c.created_at < end)
    if group_by is None:
        query = select(*measures).where(*where)
        with engine.connect() as conn:
            rows = [(None, *conn.execute(query).one())]
    else:
        # Days come from the timestamps' text: SQLite keeps them as ISO strings, and
        # PostgreSQL's are rendered in UTC by the session (``AT TIME ZONE 'UTC'``).
        if group_by == "model":
            key: Any = _c.model
        elif engine.dialect.name == "postgresql":
            key = func.to_char(func.timezone("UTC", _c.created_at), "YYYY-MM-DD")
        else:
            key = func.substr(_c.created_at, 1, 10)
        query = select(key, *measures).where(*where).group_by(key).order_by(key)
        with engine.connect() as conn:
            rows = [tuple(row) for row in conn.execute(query)]
    out = []
    for group, prompt, completion, cached, jobs, attempts, cost in rows:
        item: dict[str, Any] = {
            "prompt_tokens": int(prompt), "completion_tokens": int(completion),
            "cached_tokens": int(cached), "total_tokens": int(prompt) + int(completion),
            "jobs": int(jobs), "attempts": int(attempts),
            "cost_usd": None if cost is None else round(float(cost), 8),
        }  # fmt: skip
        if group_by is not None:
            item[group_by] = str(group)
        out.append(item)
    return out
