"""How jobs look on a terminal, and as JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from aijobs.client import CancelAnswer, JobPage, JobPublic
from aijobs.schemas import UsageReport, UsageRow


def as_json(value: BaseModel | list[BaseModel], *, indent: int | None = None) -> str:
    """A model (or a list of them) as JSON text."""
    if isinstance(value, list):
        data: Any = [v.model_dump(mode="json") for v in value]
    else:
        data = value.model_dump(mode="json")
    return json.dumps(data, indent=indent, ensure_ascii=False)


def _when(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def jobs_table(page: JobPage | Sequence[JobPublic]) -> str:
    """Jobs, one a line, under a header."""
    jobs = page.data if isinstance(page, JobPage) else page
    lines = [f"{'ID':<32}  {'KIND':<8}  {'STATUS':<9}  {'CREATED':<19}  MODEL"]
    lines += [
        f"{j.id:<32}  {j.kind:<8}  {j.status:<9}  {_when(j.created_at):<19}  {j.model}"
        for j in jobs
    ]
    return "\n".join(lines)


def job_text(job: JobPublic) -> str:
    """One job for a person: a field a line, then its result or error."""
    rows = [
        ("id", job.id), ("kind", job.kind), ("status", job.status), ("model", job.model),
        ("attempts", str(job.attempts)), ("created", _when(job.created_at)),
        ("started", _when(job.started_at)), ("finished", _when(job.finished_at)),
        ("priority", str(job.priority)),
    ]  # fmt: skip
    if job.run_at is not None:
        rows.insert(6, ("run at", _when(job.run_at)))
    if job.usage is not None:
        u = job.usage
        cached = f" ({u.cached_tokens} cached)" if u.cached_tokens else ""
        cost = f", ${u.cost_usd:.6f}" if u.cost_usd is not None else ""
        spread = f" over {len(u.attempts)} attempts" if len(u.attempts) > 1 else ""
        rows.append(("usage", f"{u.prompt_tokens} prompt{cached} + {u.completion_tokens} "
                              f"completion tokens{cost}{spread}"))  # fmt: skip
    if job.metadata:
        rows.append(("metadata", json.dumps(job.metadata, ensure_ascii=False)))
    if job.purged:
        rows.append(("purged", "yes: retention deleted its input and output"))
    if job.error is not None:
        rows.append(("error", f"{job.error.code}: {job.error.message}"))
    lines = [f"{name:<9} {value}" for name, value in rows]
    result = job.result
    if result is not None:
        lines.append("result:")
        lines.append(_result_text(job.kind, result))
    return "\n".join(lines)


def _result_text(kind: str, result: Mapping[str, Any]) -> str:
    if kind == "generate" and "text" in result:
        return str(result["text"])
    if kind == "extract" and "data" in result:
        return json.dumps(result["data"], indent=2, ensure_ascii=False)
    if kind == "embed" and "embeddings" not in result:
        return (f"{result.get('count', '?')} vectors of {result.get('dimensions', '?')} "
                "dimensions (--vectors to show them)")  # fmt: skip
    return json.dumps(result, indent=2, ensure_ascii=False)


def cancel_text(answer: CancelAnswer) -> str:
    """What a cancel did, for a person."""
    return f"{answer.detail} (status: {answer.job.status})"


def _usage_line(row: UsageRow) -> str:
    cost = f"${row.cost_usd:.6f}" if row.cost_usd is not None else "no price"
    return (f"{row.prompt_tokens} prompt ({row.cached_tokens} cached) + "
            f"{row.completion_tokens} completion tokens, {row.jobs} jobs, "
            f"{row.attempts} attempts, {cost}")  # fmt: skip


def usage_text(report: UsageReport) -> str:
    """A usage report as a person reads it: the window, the totals, the rows, the budgets."""
    lines = [f"usage from {_when(report.from_)} to {_when(report.to)}",
             f"total     {_usage_line(report.totals)}"]  # fmt: skip
    for row in report.data:
        lines.append(f"{row.model or row.day or '':<9} {_usage_line(row)}")
    for budget in report.budgets:
        amount = (f"${budget.spent:.4f} of ${budget.limit:.2f}" if budget.unit == "usd"
                  else f"{int(budget.spent)} of {int(budget.limit)} tokens")  # fmt: skip
        lines.append(f"budget    {amount} per {budget.period} (resets {_when(budget.resets_at)})")
    return "\n".join(lines)
