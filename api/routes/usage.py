"""Usage: the caller's tokens, jobs and cost over a window, and its budgets."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from aijobs.api.budgets import budget_status
from aijobs.api.deps import StateDep, TenantDep
from aijobs.api.openapi import V1_GUARD, errors
from aijobs.api.routes.jobs import utc
from aijobs.errors import InvalidInput
from aijobs.schemas import BudgetView, Rfc3339, UsageReport, UsageRow
from aijobs.spend.budgets import Budget, Spent, period_end, period_start
from aijobs.store.models import utcnow
from aijobs.store.usage import usage_report

router = APIRouter(prefix="/v1", tags=["usage"])
#: The longest window one request may sum (a year and a day: a leap year's report).
MAX_WINDOW = timedelta(days=367)


@router.get(
    "/usage",
    operation_id="getUsage",
    response_model=UsageReport,
    response_model_by_alias=True,
    responses=errors(
        *V1_GUARD,
        422,
        s422="`from` or `to` is not an RFC 3339 timestamp with a zone, `to` "
        "is not after `from`, the window is longer than 367 days, or `group_by` is not "
        "`model` or `day` (`detail` names the parameter).",
    ),
)
async def get_usage(
    state: StateDep,
    tenant: TenantDep,
    from_: Annotated[
        Rfc3339 | None,
        Query(alias="from", description="RFC 3339 with a zone; default: the month's start (UTC)"),
    ] = None,
    to: Annotated[Rfc3339 | None, Query(description="RFC 3339 with a zone; default: now")] = None,
    group_by: Annotated[
        Literal["model", "day"] | None, Query(description="one row per model or per UTC day")
    ] = None,
) -> UsageReport:
    """The caller's usage in ``[from, to)``: prompt, completion and cached tokens, jobs,
    attempts and cost, every attempt counted (retries included); and its budgets."""
    now = utcnow()
    end = utc(to, "to") or now
    start = utc(from_, "from") or period_start("month", end)
    if end <= start:
        raise InvalidInput("to: must be after from")
    if end - start > MAX_WINDOW:
        raise InvalidInput("from: the window may be at most 367 days")
    engine = state.repo.db.engine
    totals = await run_in_threadpool(usage_report, engine, tenant, start, end, None)
    data = []
    if group_by is not None:
        data = await run_in_threadpool(usage_report, engine, tenant, start, end, group_by)
    budgets = await run_in_threadpool(budget_status, state, tenant)
    return UsageReport.model_validate({
        "from": start, "to": end, "group_by": group_by, "totals": UsageRow(**totals[0]),
        "data": [UsageRow(**row) for row in data],
        "budgets": [_budget_view(b, spent, now) for b, spent in budgets],
    })  # fmt: skip


def _budget_view(budget: Budget, spent: Spent, now: datetime) -> BudgetView:
    return BudgetView(
        period=budget.period, unit=budget.unit, limit=budget.limit,
        spent=spent.of(budget.unit), resets_at=period_end(budget.period, now),
    )  # fmt: skip
