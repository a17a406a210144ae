"""The ``tenant_budgets`` table, and each tenant's budgets (SQL over configuration),
cached briefly: every submit of a tenant and every running attempt asks."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, cast

from sqlalchemy import delete, select

from aijobs.spend.budgets import Budget, Period, Unit, merged
from aijobs.store.db import Database
from aijobs.store.models import TenantBudget, utcnow

if TYPE_CHECKING:
    from aijobs.settings import Settings


class BudgetRepository:
    """Budgets set per tenant, and the ones in force (with ``configured``)."""

    def __init__(
        self,
        db: Database,
        configured: dict[str, list[Budget]] | None = None,
        *,
        cache_ttl_s: float = 5.0,
    ) -> None:
        self.db = db
        self._configured = configured or {}
        self._ttl_s = cache_ttl_s
        self._cache: dict[str, tuple[float, list[Budget]]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, db: Database) -> BudgetRepository:
        """The table, over AIJOBS_TENANT_BUDGETS."""
        configured = {t: settings.configured_budgets(t) for t in settings.tenant_budgets}
        return cls(db, configured, cache_ttl_s=settings.budget_cache_ttl_s)

    def stored(self, tenant: str) -> list[Budget]:
        """The budgets set in SQL for ``tenant``."""
        query = select(TenantBudget.period, TenantBudget.unit, TenantBudget.limit).where(
            TenantBudget.tenant == tenant
        )
        with self.db.engine.connect() as conn:
            return [
                # The table holds only what set-budget wrote: PERIODS and UNITS.
                Budget(cast(Period, period), cast(Unit, unit), float(limit))
                for period, unit, limit in conn.execute(query)
            ]

    def in_force(self, tenant: str) -> list[Budget]:
        """The tenant's budgets: SQL's, and the configured ones SQL does not replace."""
        now = time.monotonic()
        if self._ttl_s > 0:
            with self._lock:
                hit = self._cache.get(tenant)
            if hit is not None and hit[0] > now:
                return hit[1]
        budgets = merged(self._configured.get(tenant, []), self.stored(tenant))
        if self._ttl_s > 0:
            with self._lock:
                self._cache[tenant] = (now + self._ttl_s, budgets)
        return budgets

    def set(self, tenant: str, budget: Budget) -> None:
        """Set (or replace) the tenant's budget of that period and unit."""
        with self.db.session() as session:
            row = session.get(TenantBudget, (tenant, budget.period, budget.unit))
            if row is None:
                session.add(TenantBudget(tenant=tenant, period=budget.period, unit=budget.unit,
                                         limit=budget.limit, updated_at=utcnow()))  # fmt: skip
            else:
                row.limit = budget.limit
        self._cache.pop(tenant, None)

    def clear(self, tenant: str, period: Period | None = None, unit: Unit | None = None) -> int:
        """Remove the tenant's stored budgets (those of ``period``/``unit`` only, when
        given); how many were removed. Configured ones stay in force."""
        stmt = delete(TenantBudget).where(TenantBudget.tenant == tenant)
        if period is not None:
            stmt = stmt.where(TenantBudget.period == period)
        if unit is not None:
            stmt = stmt.where(TenantBudget.unit == unit)
        with self.db.engine.begin() as conn:
            removed = conn.execute(stmt).rowcount
        self._cache.pop(tenant, None)
        return int(removed or 0)
