"""Per-tenant budgets: tokens or USD per day or month (UTC), from SQL and configuration.

A budget is ``(period, unit, limit)``. ``AIJOBS_TENANT_BUDGETS`` gives defaults
(``{"acme": [{"usd": 10, "period": "day"}, {"tokens": 5000000, "period": "month"}]}``);
a budget set with ``aijobs tenants set-budget`` (SQL) replaces the configured one of the
same period and unit. Spend is counted from the start of the period in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aijobs.errors import LimitReached, Refused

Period = Literal["day", "month"]
Unit = Literal["tokens", "usd"]
PERIODS: tuple[Period, ...] = ("day", "month")
UNITS: tuple[Unit, ...] = ("tokens", "usd")


class BudgetSpec(BaseModel):
    """One configured budget: ``{"usd": 10, "period": "day"}`` or ``{"tokens": N, ...}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    period: Period
    usd: float | None = Field(default=None, gt=0)
    tokens: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_unit(self) -> Self:
        if (self.usd is None) == (self.tokens is None):
            raise ValueError("a budget has exactly one of usd and tokens")
        return self

    def budget(self) -> Budget:
        """As a ``Budget``."""
        if self.usd is not None:
            return Budget(self.period, "usd", self.usd)
        return Budget(self.period, "tokens", float(self.tokens or 0))


def parse_config(value: Any) -> dict[str, list[BudgetSpec]]:
    """``AIJOBS_TENANT_BUDGETS``: tenant -> one budget or a list of them."""
    if not isinstance(value, dict):
        raise ValueError("AIJOBS_TENANT_BUDGETS must be a JSON object of tenant -> budgets")
    out: dict[str, list[BudgetSpec]] = {}
    for tenant, specs in value.items():
        items = specs if isinstance(specs, list) else [specs]
        out[str(tenant)] = [s if isinstance(s, BudgetSpec) else BudgetSpec.model_validate(s)
                            for s in items]  # fmt: skip
    return out


@dataclass(frozen=True, slots=True)
class Budget:
    """A tenant's limit on tokens or USD per day or month."""

    period: Period
    unit: Unit
    limit: float

    def describe(self) -> str:
        """``$10.00 per day``, ``1000 tokens per month``."""
        if self.unit == "tokens":
            amount = f"{int(self.limit)} tokens"
        else:  # a budget under a cent keeps its digits
            amount = f"${self.limit:.2f}" if self.limit >= 0.01 else f"${self.limit:g}"
        return f"{amount} per {self.period}"


@dataclass(frozen=True, slots=True)
class Spent:
    """What a tenant spent in one period so far."""

    tokens: int = 0
    usd: float = 0.0

    def of(self, unit: Unit) -> float:
        """The amount in ``unit``."""
        return float(self.tokens) if unit == "tokens" else self.usd


def period_start(period: Period, now: datetime) -> datetime:
    """The start (UTC) of the period ``now`` falls in."""
    now = now.astimezone(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return day if period == "day" else day.replace(day=1)


def period_end(period: Period, now: datetime) -> datetime:
    """The start (UTC) of the next period."""
    start = period_start(period, now)
    if period == "day":
        return start + timedelta(days=1)
    return (start + timedelta(days=32)).replace(day=1)


def merged(configured: list[Budget], stored: list[Budget]) -> list[Budget]:
    """The tenant's budgets: stored ones replace configured ones of the same period and
    unit."""
    by_slot = {(b.period, b.unit): b for b in configured}
    by_slot.update({(b.period, b.unit): b for b in stored})
    return sorted(by_slot.values(), key=lambda b: (PERIODS.index(b.period), b.unit))


class TokenBudgetSpent(LimitReached):
    """Raised when a tenant's token budget for the period is spent (429, with
    ``Retry-After`` at the next period)."""


class MoneyBudgetSpent(Refused):
    """Raised when a tenant's USD budget for the period is spent (402 Payment Required)."""

    status = 402


def over(budgets: list[Budget], spent: dict[Period, Spent]) -> Budget | None:
    """The first budget ``spent`` reached, if any (USD ones first: they are the bill)."""
    for budget in sorted(budgets, key=lambda b: b.unit != "usd"):
        if spent.get(budget.period, Spent()).of(budget.unit) >= budget.limit:
            return budget
    return None


def refusal(tenant: str, budget: Budget, spent: Spent, now: datetime) -> Refused:
    """The error a submit past ``budget`` gets: it names the budget and when it resets."""
    resets = period_end(budget.period, now)
    used = f"${spent.usd:.4f}" if budget.unit == "usd" else f"{spent.tokens} tokens"
    detail = (
        f"budget exceeded: tenant {tenant} has spent {used} of its {budget.describe()} "
        f"budget; it resets at {resets.strftime('%Y-%m-%dT%H:%M:%SZ')}"
    )
    wait_s = max(1.0, (resets - now).total_seconds())
    if budget.unit == "usd":
        return MoneyBudgetSpent(detail)
    return TokenBudgetSpent(detail, retry_after_s=wait_s)
