"""``GET /v1/usage``: the tenant's tokens, jobs and cost, in all, per model and per day,
equal to the sum of its jobs' usage; bad parameters are a 422 that names them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from tests.conftest import PRICED_MODEL
from tests.spend.conftest import Tenant

pytestmark = pytest.mark.usefixtures("worker")


def test_usage_sums_the_jobs_in_all_per_model_and_per_day(tenant: Tenant) -> None:
    ids = [tenant.submit(f"usage report {n}", max_tokens=5 + n).json()["id"] for n in range(3)]
    other = tenant.submit("usage report, unpriced", model="unpriced-model", max_tokens=4)
    jobs = [tenant.finished(i) for i in [*ids, other.json()["id"]]]
    assert all(j["status"] == "succeeded" for j in jobs)

    report = tenant.http.get("/v1/usage")
    assert report.status_code == 200, report.text
    body = report.json()
    totals = body["totals"]
    assert totals["jobs"] == 4 and totals["attempts"] == 4
    for name in ("prompt_tokens", "completion_tokens", "cached_tokens", "total_tokens"):
        assert totals[name] == sum(j["usage"][name] for j in jobs), name
    assert totals["completion_tokens"] == 5 + 6 + 7 + 4
    priced = sum(j["usage"]["cost_usd"] for j in jobs[:3])
    assert totals["cost_usd"] == pytest.approx(priced, abs=1e-8)
    assert body["data"] == [] and body["group_by"] is None and body["budgets"] == []

    by_model = tenant.http.get("/v1/usage", params={"group_by": "model"}).json()["data"]
    assert [row["model"] for row in by_model] == sorted([PRICED_MODEL, "unpriced-model"])
    rows = {row["model"]: row for row in by_model}
    assert rows[PRICED_MODEL]["jobs"] == 3 and rows["unpriced-model"]["cost_usd"] is None
    assert rows["unpriced-model"]["completion_tokens"] == 4

    by_day = tenant.http.get("/v1/usage", params={"group_by": "day"}).json()["data"]
    assert [row["day"] for row in by_day] == [datetime.now(UTC).strftime("%Y-%m-%d")]
    assert by_day[0]["total_tokens"] == totals["total_tokens"]

    # A window given in another zone means the same instants; one before the jobs is empty.
    since = (datetime.now(UTC) - timedelta(hours=1)).astimezone(timezone(timedelta(hours=5)))
    same = tenant.http.get("/v1/usage", params={"from": since.isoformat()}).json()
    assert same["totals"] == totals
    before = tenant.http.get("/v1/usage", params={
        "from": (datetime.now(UTC) - timedelta(days=3)).isoformat(),
        "to": (datetime.now(UTC) - timedelta(days=2)).isoformat(),
    }).json()  # fmt: skip
    assert before["totals"]["jobs"] == 0 and before["totals"]["cost_usd"] is None


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"from": "2026-01-01T00:00:00"}, "from"),  # no zone
        ({"to": "yesterday"}, "to"),
        ({"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "to"),
        ({"from": "2020-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "from"),
        ({"group_by": "tenant"}, "group_by"),
    ],
)
def test_bad_parameters_are_a_422_naming_them(
    tenant: Tenant, params: dict[str, str], named: str
) -> None:
    answer = tenant.http.get("/v1/usage", params=params)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith(named), answer.json()
