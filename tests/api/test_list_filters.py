"""``GET /v1/jobs`` filters: ``metadata.KEY=VALUE``, ``created_after`` / ``created_before``
and ``order=run_at``, alike on SQLite and PostgreSQL; a bad filter is a 422."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest


def body(tag: str, meta: dict[str, Any], **extra: Any) -> dict[str, Any]:
    # Scheduled a day ahead: these jobs only need to exist, not to run.
    return {"kind": "generate", "model": "m", "max_tokens": 1, "delay_s": 86_400,
            "messages": [{"role": "user", "content": tag}], "metadata": {"tag": tag, **meta},
            **extra}  # fmt: skip


def ids(client: httpx.Client, **params: Any) -> list[str]:
    answer = client.get("/v1/jobs", params=params)
    assert answer.status_code == 200, answer.text
    return [job["id"] for job in answer.json()["data"]]


@pytest.fixture
def tagged(client: httpx.Client) -> Any:
    """Jobs of one test, told apart by their ``tag``; cancelled afterwards."""
    made: list[str] = []

    def submit(meta: dict[str, Any], **extra: Any) -> str:
        answer = client.post("/v1/jobs", json=body(tag, meta, **extra))
        assert answer.status_code == 202, answer.text
        made.append(answer.json()["id"])
        return made[-1]

    tag = uuid.uuid4().hex
    submit.tag = tag  # type: ignore[attr-defined]
    yield submit
    for job_id in made:
        client.post(f"/v1/jobs/{job_id}/cancel")


def test_metadata_filters_match_strings_and_numbers_alike_on_every_store(
    client: httpx.Client, client_b: httpx.Client, tagged: Any
) -> None:
    tag = tagged.tag
    acme = tagged({"customer": "acme", "n": 42, "flag": True, "aws:region": "eu-west-1"})
    other = tagged({"customer": "globex", "n": 7, "flag": False, "nested": {"customer": "acme"}})
    quoted = tagged({"customer": "acme co", "n": 4.5, "none": None, "list": ["acme"]})
    assert ids(client, **{"metadata.tag": tag}) == [quoted, other, acme]
    assert ids(client, **{"metadata.tag": tag, "metadata.customer": "acme"}) == [acme]
    assert ids(client, **{"metadata.tag": tag, "metadata.customer": "acme co"}) == [quoted]
    assert ids(client, **{"metadata.tag": tag, "metadata.n": "42"}) == [acme]
    assert ids(client, **{"metadata.tag": tag, "metadata.n": "4.5"}) == [quoted]
    assert ids(client, **{"metadata.tag": tag, "metadata.aws:region": "eu-west-1"}) == [acme]
    # Booleans, nulls, objects and lists match nothing (the stores spell them differently).
    for key, value in [("flag", "true"), ("flag", "1"), ("none", "null"), ("none", ""),
                       ("list", "acme"), ("nested", "acme"), ("missing", "x")]:  # fmt: skip
        assert ids(client, **{"metadata.tag": tag, f"metadata.{key}": value}) == [], key
    # Another tenant's jobs are never listed, whatever the filter.
    assert ids(client_b, **{"metadata.tag": tag}) == []
    # Filters combine with status and kind.
    assert ids(client, **{"metadata.tag": tag, "status": "queued", "kind": "generate"}) == [
        quoted,
        other,
        acme,
    ]
    assert ids(client, **{"metadata.tag": tag, "status": "running"}) == []


def test_created_after_and_before_make_half_open_windows(client: httpx.Client, tagged: Any) -> None:
    tag = tagged.tag
    first = tagged({})
    time.sleep(0.05)
    middle = datetime.now(UTC)
    time.sleep(0.05)
    second = tagged({})
    both = ids(client, **{"metadata.tag": tag})
    assert both == [second, first]
    assert ids(client, **{"metadata.tag": tag, "created_after": middle.isoformat()}) == [second]
    assert ids(client, **{"metadata.tag": tag, "created_before": middle.isoformat()}) == [first]
    jobs = {j["id"]: j for j in client.get("/v1/jobs", params={"metadata.tag": tag}).json()["data"]}
    created = jobs[second]["created_at"]
    # A window's start is in it, its end is not: windows laid end to end miss nothing.
    assert ids(client, **{"metadata.tag": tag, "created_after": created}) == [second]
    assert ids(client, **{"metadata.tag": tag, "created_before": created}) == [first]
    # The same instant in another zone.
    plus_five = middle.astimezone(timezone(timedelta(hours=5)))
    assert ids(client, **{"metadata.tag": tag, "created_after": plus_five.isoformat()}) == [second]


def test_order_run_at_lists_scheduled_jobs_soonest_first_by_pages(
    client: httpx.Client, tagged: Any
) -> None:
    tag = tagged.tag
    now = datetime.now(UTC)
    at = {h: (now + timedelta(hours=h)).isoformat() for h in (3, 1, 2)}
    made = {h: tagged({}, delay_s=None, run_at=when) for h, when in at.items()}
    page = client.get("/v1/jobs", params={"metadata.tag": tag, "order": "run_at", "limit": 2})
    assert page.status_code == 200, page.text
    first = page.json()
    assert [j["id"] for j in first["data"]] == [made[1], made[2]]
    assert first["next_cursor"]
    rest = client.get("/v1/jobs", params={"metadata.tag": tag, "order": "run_at", "limit": 2,
                                          "cursor": first["next_cursor"]}).json()  # fmt: skip
    assert [j["id"] for j in rest["data"]] == [made[3]] and rest["next_cursor"] is None
    # A cursor belongs to its order.
    other = client.get("/v1/jobs", params={"metadata.tag": tag, "cursor": first["next_cursor"]})
    assert other.status_code == 422
    newest = client.get("/v1/jobs", params={"metadata.tag": tag, "limit": 1}).json()
    wrong = client.get("/v1/jobs", params={"order": "run_at", "cursor": newest["next_cursor"]})
    assert wrong.status_code == 422 and wrong.json()["detail"].startswith("cursor:")


@pytest.mark.parametrize(
    ("params", "phrase"),
    [
        ({"created_after": "2030-01-01T00:00:00"}, "created_after:"),
        ({"created_after": "2030-01-01"}, "created_after:"),
        ({"created_before": "yesterday"}, "created_before:"),
        ({"created_before": "1700000000"}, "created_before:"),
        ({"created_after": "0001-01-01T00:00:00+14:00"}, "created_after:"),
        ({"created_before": "9999-12-31T23:59:59-23:00"}, "created_before:"),
        ({"order": "priority"}, "order:"),
        ({"metadata.": "x"}, "metadata."),
        ({'metadata.a"b': "x"}, "metadata."),
        ({"metadata.a'b": "x"}, "metadata."),
        ({"metadata.a b": "x"}, "metadata."),
        ({"metadata.$.a": "x"}, "metadata."),
        ({"metadata." + "k" * 101: "x"}, "metadata."),
        ({"metadata.k": "\x00"}, "metadata.k:"),
        ({"metadata.k": "v" * 1001}, "metadata.k:"),
        ({f"metadata.k{i}": "v" for i in range(11)}, "metadata:"),
    ],
)
def test_bad_filters_are_422_never_5xx(
    client: httpx.Client, params: dict[str, str], phrase: str
) -> None:
    answer = client.get("/v1/jobs", params=params)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith(phrase), answer.text
