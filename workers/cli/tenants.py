"""``aijobs tenants``: budgets per tenant, set in the job store (operators).

``set-budget TENANT --usd 10 --period day`` (or ``--tokens N --period month``),
``show TENANT`` (its budgets in force and what each period has spent) and
``clear-budget TENANT [--period P] [--unit U]``.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aijobs.spend.budgets import Budget

# As in aijobs.spend.budgets (not imported here: `aijobs --help` stays light).
PERIODS = ("day", "month")
UNITS = ("tokens", "usd")


def add_tenants(sub: Any) -> None:
    """The ``tenants`` command and its subcommands."""
    tenants = sub.add_parser("tenants", help="tenants' budgets (tokens or USD per day or month)")
    verbs = tenants.add_subparsers(dest="tenants_command", required=True)
    set_ = verbs.add_parser("set-budget", help="set a tenant's budget for a day or a month")
    set_.add_argument("tenant")
    amount = set_.add_mutually_exclusive_group(required=True)
    amount.add_argument("--usd", type=float, default=None, help="USD per period")
    amount.add_argument("--tokens", type=int, default=None, help="tokens per period")
    set_.add_argument("--period", choices=PERIODS, required=True, help="UTC day or month")
    show = verbs.add_parser("show", help="a tenant's budgets and its spend this period")
    show.add_argument("tenant")
    clear = verbs.add_parser("clear-budget", help="remove a tenant's stored budgets")
    clear.add_argument("tenant")
    clear.add_argument("--period", choices=PERIODS, default=None)
    clear.add_argument("--unit", choices=UNITS, default=None)
    tenants.set_defaults(func=cmd_tenants)


def cmd_tenants(args: argparse.Namespace) -> int:
    """Set, show or clear a tenant's budgets."""
    from aijobs.settings import Settings
    from aijobs.spend.budgets import Budget
    from aijobs.store import Database
    from aijobs.store.budgets import BudgetRepository
    from aijobs.store.migrate import require_current

    settings = Settings()
    db = Database(settings.database_url)
    try:
        require_current(db.engine, settings.database_url)
        budgets = BudgetRepository.from_settings(settings, db)
        if args.tenants_command == "set-budget":
            amount = args.usd if args.usd is not None else args.tokens
            if amount is None or amount <= 0:
                print("aijobs: a budget must be above 0", file=sys.stderr)
                return 2
            budget = Budget(args.period, "usd" if args.usd is not None else "tokens", amount)
            budgets.set(args.tenant, budget)
            _recount(settings, db, args.tenant)
            print(f"tenant {args.tenant}: {budget.describe()}")
        elif args.tenants_command == "clear-budget":
            removed = budgets.clear(args.tenant, args.period, args.unit)
            _recount(settings, db, args.tenant)
            print(f"tenant {args.tenant}: {removed} budget(s) removed")
        else:
            _show(settings, db, budgets.in_force(args.tenant), args.tenant)
        return 0
    finally:
        db.dispose()


def _show(settings: Any, db: Any, budgets: list[Budget], tenant: str) -> None:
    from aijobs.spend.budgets import Spent, period_start
    from aijobs.store.models import utcnow
    from aijobs.store.usage import spent_since

    stored = {(b.period, b.unit) for b in _stored(db, tenant)}
    if not budgets:
        print(f"tenant {tenant}: no budget")
    now = utcnow()
    for budget in budgets:
        spent: Spent = spent_since(db.engine, tenant, period_start(budget.period, now))
        used = f"${spent.usd:.4f}" if budget.unit == "usd" else f"{spent.tokens} tokens"
        where = "set" if (budget.period, budget.unit) in stored else "configured"
        print(f"{budget.describe():<24} spent {used} this {budget.period} ({where})")


def _stored(db: Any, tenant: str) -> list[Budget]:
    from aijobs.store.budgets import BudgetRepository

    return BudgetRepository(db, cache_ttl_s=0).stored(tenant)


def _recount(settings: Any, db: Any, tenant: str) -> None:
    """Drop the tenant's spend counters, so the next check counts from SQL again (a
    tenant without a budget is not counted in Redis: its counters may be behind)."""
    if not settings.redis_url:
        return
    from redis.exceptions import RedisError

    from aijobs.connections import sync_client
    from aijobs.spend.counters import forget

    try:
        redis = sync_client(settings.redis_target(), name="aijobs-cli")
        try:
            forget(redis, tenant)
        finally:
            redis.close()
    except (RedisError, OSError) as exc:
        print(f"aijobs: spend counters not reset ({exc}); they expire on their own",
              file=sys.stderr)  # fmt: skip
