"""A submit past the tenant's budget is refused before anything is queued: 402 for a USD
budget (the bill), 429 with ``Retry-After`` at the next period for a token budget."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool

from aijobs.spend.budgets import Budget, Period, Spent, over, refusal
from aijobs.store.models import utcnow

if TYPE_CHECKING:  # the state imports admission, which imports this
    from aijobs.api.state import ApiState


def _check(state: ApiState, tenant: str) -> None:
    budgets = state.budgets.in_force(tenant)
    if not budgets:
        return  # no budget: no Redis call
    now = utcnow()
    spent = state.spend.read(tenant, now)
    reached = over(budgets, spent)
    if reached is not None:
        raise refusal(tenant, reached, spent[reached.period], now)


async def check_budget(state: ApiState, tenant: str) -> None:
    """Raise ``MoneyBudgetSpent`` (402) or ``TokenBudgetSpent`` (429) when one of the
    tenant's budgets is spent."""
    await run_in_threadpool(_check, state, tenant)


def budget_status(state: ApiState, tenant: str) -> list[tuple[Budget, Spent]]:
    """The tenant's budgets in force and what it spent in each one's period."""
    budgets = state.budgets.in_force(tenant)
    if not budgets:
        return []
    spent: dict[Period, Spent] = state.spend.read(tenant, utcnow())
    return [(b, spent[b.period]) for b in budgets]
