"""The OpenAPI document tells the truth, both ways: every status it lists for a route is
provoked over HTTP on the real API (the session's, one with tight limits, one whose store
and Redis are gone) and each answer is held to the live ``/openapi.json`` — its status
listed, its body valid against the schema (an event stream frame by frame), its required
headers there; and every answer seen is one the document lists."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate as validate_openapi
from sqlalchemy import text

from aijobs.api.main import create_app
from aijobs.devtools.redis_server import free_port
from aijobs.settings import Settings
from aijobs.spend.budgets import Budget
from aijobs.store import Database
from aijobs.store.budgets import BudgetRepository
from aijobs.store.db import make_engine
from aijobs.store.migrate import upgrade
from tests.api.openapi_check import DocumentCheck
from tests.conftest import KEY_A, PRICED_MODEL, serve_in_thread
from tests.support import read_events, wait_for

pytestmark = pytest.mark.usefixtures("worker")

#: The tenant of the APIs this module starts (its own, so their limits touch no other test).
TENANT_O, KEY_O = "tenant-openapi", "key-openapi-0123456789"
METRICS_TOKEN = "metrics-token-0123456789"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the Standard Webhooks example
#: Allow-listed on the tight API, never called: no worker here has the secret to send.
WEBHOOK_URL = "http://127.0.0.1:9/hooks/aijobs"
GEN = {"kind": "generate", "model": "m", "max_tokens": 5,
       "messages": [{"role": "user", "content": "hello"}]}  # fmt: skip
EXTRACT = {"kind": "extract", "model": "m", "text": "ACME, 12.50 EUR",
           "schema": {"type": "object", "properties": {"vendor": {"type": "string"}},
                      "required": ["vendor"]}}  # fmt: skip
EMBED = {"kind": "embed", "model": "text-embedding-3-small", "input": ["a", "b"], "dimensions": 8}
UNKNOWN_ID = "0" * 32
#: The tight API's limits: small bodies, few submissions and readers, few failed keys.
SMALL_BODY, SMALL_JOBS_BODY = 1024, 4096


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _own_settings(settings: Settings, **limits: Any) -> Settings:
    """Settings of an API of this module: the session's services, tenant O's key."""
    return Settings(
        redis_url=settings.require_redis_url(),
        database_url=settings.database_url,
        api_keys=f"{TENANT_O}:{KEY_O}",
        key_cache_ttl_s=0,
        budget_cache_ttl_s=0,
        sse_keepalive_s=2.0,
        **limits,
    )


@pytest.fixture(scope="module")
def tight_api(settings: Settings) -> Iterator[str]:
    server, thread, url = serve_in_thread(create_app(_own_settings(
        settings,
        max_body_bytes=SMALL_BODY,
        max_jobs_body_bytes=SMALL_JOBS_BODY,
        tenant_submits_per_s=2,
        tenant_max_readers=1,
        key_failures_per_s=3,
        metrics_token=METRICS_TOKEN,
        webhook_secret=WEBHOOK_SECRET,
        webhook_allowed_hosts=["127.0.0.1"],
        delete_wait_s=0.0,
    )))  # fmt: skip
    yield url
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def broken_api(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An API whose Redis never answers and whose store lost its tables after it started
    (a real store error on every read, with the key still known: a bootstrap key)."""
    database_url = f"sqlite:///{Path(tmp_path_factory.mktemp('broken')) / 'aijobs.db'}"
    upgrade(database_url)  # it refuses to start on a store that is not migrated
    broken = _own_settings(settings).model_copy(
        update={"database_url": database_url, "redis_url": f"redis://127.0.0.1:{free_port()}/0"}
    )
    server, thread, url = serve_in_thread(create_app(broken))
    engine = make_engine(database_url)
    with engine.begin() as conn:
        for table in ("embedding_batches", "jobs", "api_keys", "job_usage", "tenant_budgets"):
            conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
    engine.dispose()
    yield url
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def document(api_url: str) -> dict[str, Any]:
    answer = httpx.get(f"{api_url}/openapi.json", timeout=30)
    assert answer.status_code == 200
    return dict(answer.json())


@dataclass
class Apis:
    """Clients of the three APIs, and the sim."""

    main: httpx.Client
    tight: httpx.Client
    broken: httpx.Client
    sim_url: str
    database_url: str


def _fault(apis: Apis, **spec: Any) -> None:
    httpx.post(f"{apis.sim_url}/_sim/faults", json={"faults": [spec]}).raise_for_status()


def _finished(client: httpx.Client, job_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = dict(client.get(f"/v1/jobs/{job_id}", params={"vectors": "false"}).json())
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None

    return wait_for(done, timeout_s=60, what=f"job {job_id} to finish")


def _submit(check: DocumentCheck, client: httpx.Client, body: dict[str, Any],
            what: str, **kwargs: Any) -> str:  # fmt: skip
    answer = client.post("/v1/jobs", json=body, **kwargs)
    check.check(answer, what)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def _read_stream(check: DocumentCheck, client: httpx.Client, job_id: str, what: str,
                 **kwargs: Any) -> None:  # fmt: skip
    with client.stream("GET", f"/v1/jobs/{job_id}/events", **kwargs) as response:
        check.check_stream(response, what)


def tour_main(check: DocumentCheck, apis: Apis) -> None:
    """The session's API: health, every kind end to end, and the answers of bad requests."""
    c = apis.main
    for path in ("/healthz", "/readyz", "/metrics"):
        check.check(c.get(path))

    # Every kind, a retried one and a failed one; their streams from the start.
    retried, failing = _unique("m-retry"), _unique("m-fail")
    _fault(apis, kind="server_error", model=retried)
    _fault(apis, kind="refusal", model=failing)
    key = {"Idempotency-Key": _unique("idem")}
    jobs = {
        "generate": _submit(check, c, GEN, "submit generate", headers=key),
        "extract": _submit(check, c, EXTRACT, "submit extract"),
        "embed": _submit(check, c, EMBED, "submit embed"),
        "retried": _submit(check, c, {**GEN, "model": retried}, "submit, to be retried"),
        "failed": _submit(check, c, {**EXTRACT, "model": failing}, "submit, to fail"),
    }
    check.check(c.get(f"/v1/jobs/{jobs['generate']}"), "a job just submitted")
    check.check(c.post("/v1/jobs", json=GEN, headers=key), "the same Idempotency-Key again")
    check.check(c.post("/v1/jobs", json={**GEN, "max_tokens": 6}, headers=key),
                "an Idempotency-Key with another body")  # fmt: skip
    for name, job_id in jobs.items():
        _read_stream(check, c, job_id, f"the {name} job's events")
        _finished(c, job_id)
    finished = jobs["generate"]
    last = read_events(c, finished)[-1].id
    check.check(c.get(f"/v1/jobs/{finished}/events", params={"after": last}), "resume at the end")
    _read_stream(check, c, finished, "resume by Last-Event-ID",
                 headers={"Last-Event-ID": str(last - 1)})  # fmt: skip

    # Reading jobs: each kind, vectors in both forms and none.
    for name, job_id in jobs.items():
        check.check(c.get(f"/v1/jobs/{job_id}"), f"the {name} job")
    embed = jobs["embed"]
    check.check(c.get(f"/v1/jobs/{embed}", params={"format": "base64"}), "vectors as base64")
    check.check(c.get(f"/v1/jobs/{embed}", params={"vectors": "false"}), "no vectors")
    page = c.get("/v1/jobs", params={"limit": 2})
    check.check(page, "a page of jobs")
    cursor = page.json()["next_cursor"]
    check.check(c.get("/v1/jobs", params={"limit": 2, "cursor": cursor}), "the next page")
    check.check(c.get("/v1/jobs", params={"kind": "embed", "status": "succeeded"}), "filtered")

    # Event tokens, and a stream read with one.
    issued = c.post(f"/v1/jobs/{finished}/token")
    check.check(issued, "an event token")
    with httpx.Client(base_url=str(c.base_url), timeout=30) as anonymous:
        _read_stream(check, anonymous, finished, "events by token",
                     params={"token": issued.json()["token"]})  # fmt: skip
        check.check(anonymous.get(f"/v1/jobs/{finished}/events", params={"token": "a.b"}),
                    "a token that is not one")  # fmt: skip
        for method, path in _v1_routes(finished):
            check.check(anonymous.request(method, path), f"{method} {path} without a key")
        wrong = {"Authorization": "Bearer not-a-key"}
        check.check(anonymous.get("/v1/jobs", headers=wrong), "a wrong key")

    # Cancelling: a finished job (200), a new one (202: before it ran, or asked to stop).
    check.check(c.post(f"/v1/jobs/{finished}/cancel"), "cancel a finished job")
    fresh = _submit(check, c, {**GEN, "max_tokens": 50}, "submit, to be cancelled")
    check.check(c.post(f"/v1/jobs/{fresh}/cancel"), "cancel a new job")
    _finished(c, fresh)

    # Batches, retries and deletes.
    batch = c.post("/v1/jobs/batch", json={"jobs": [GEN, {**GEN, "messages": []}, "x"]})
    check.check(batch, "a batch, one good body and two bad")
    for what, request in [("no jobs", {"json": {"jobs": []}}), ("not a batch", {"json": [GEN]}),
                          ("an unknown field", {"json": {"jobs": [GEN], "x": 1}})]:  # fmt: skip
        check.check(c.post("/v1/jobs/batch", **request), f"a batch with {what}")
    failed = jobs["failed"]
    again = c.post(f"/v1/jobs/{failed}/retry", headers={"Idempotency-Key": _unique("retry")})
    check.check(again, "retry a failed job")
    check.check(c.post(f"/v1/jobs/{finished}/retry"), "retry a succeeded job")
    check.check(c.post(f"/v1/jobs/{failed}/retry", headers={"Idempotency-Key": "has space"}),
                "retry with a bad Idempotency-Key")  # fmt: skip
    _finished(c, again.json()["id"])
    check.check(c.delete(f"/v1/jobs/{again.json()['id']}"), "delete a finished job")

    # Unknown ids, and bad input of every sort.
    for method, path in _v1_routes(UNKNOWN_ID):
        if UNKNOWN_ID in path:
            check.check(c.request(method, path), f"{method} {path}: unknown id")
    bad_bodies: list[tuple[str, dict[str, Any]]] = [
        ("no messages", {"json": {**GEN, "messages": []}}),
        ("an unknown kind", {"json": {**GEN, "kind": "teleport"}}),
        ("an unknown field", {"json": {**GEN, "tenant": "b"}}),
        ("not JSON", {"content": b'{"kind":', "headers": {"Content-Type": "application/json"}}),
        ("not UTF-8", {"content": b'{"kind": "\xff"}',
                       "headers": {"Content-Type": "application/json"}}),
        ("nested too deep", {"content": b"[" * 100_000 + b"]" * 100_000,
                             "headers": {"Content-Type": "application/json"}}),
        ("a bad Idempotency-Key", {"json": GEN, "headers": {"Idempotency-Key": "has space"}}),
        ("a bad schema", {"json": {**EXTRACT, "schema": {"type": "wizard"}}}),
    ]  # fmt: skip
    for what, request in bad_bodies:
        check.check(c.post("/v1/jobs", **request), f"submit {what}")
    for params in ({"limit": 0}, {"cursor": "!!!"}, {"status": "nope"}):
        check.check(c.get("/v1/jobs", params=params), f"list with {params}")
    check.check(c.get(f"/v1/jobs/{finished}", params={"format": "nope"}), "a bad format")
    # Usage: in all, by model and by day; bad windows and groupings.
    check.check(c.get("/v1/usage"), "usage this month")
    check.check(c.get("/v1/usage", params={"group_by": "model"}), "usage by model")
    check.check(c.get("/v1/usage", params={"group_by": "day", "from": "2026-11-01T00:00:00+02:00"}),
                "usage by day")  # fmt: skip
    for params in ({"from": "2026-01-01"}, {"group_by": "tenant"},
                   {"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}):  # fmt: skip
        check.check(c.get("/v1/usage", params=params), f"usage with {params}")
    check.check(c.get(f"/v1/jobs/{finished}/events", params={"after": -1}), "after=-1")
    check.check(c.get(f"/v1/jobs/{finished}/events", headers={"Last-Event-ID": "x"}),
                "a Last-Event-ID that is not an id")  # fmt: skip


def _v1_routes(job_id: str) -> list[tuple[str, str]]:
    return [("POST", "/v1/jobs"), ("GET", "/v1/jobs"), ("GET", f"/v1/jobs/{job_id}"),
            ("POST", f"/v1/jobs/{job_id}/cancel"), ("GET", f"/v1/jobs/{job_id}/events"),
            ("POST", f"/v1/jobs/{job_id}/token"), ("POST", "/v1/jobs/batch"),
            ("POST", f"/v1/jobs/{job_id}/retry"), ("DELETE", f"/v1/jobs/{job_id}"),
            ("GET", "/v1/usage")]  # fmt: skip


#: The submissions, which may send larger bodies than any other route.
_SUBMITS = {("POST", "/v1/jobs"), ("POST", "/v1/jobs/batch")}


def tour_tight(check: DocumentCheck, apis: Apis) -> None:
    """An API with small limits: bodies too large, limits reached, a metrics token."""
    c = apis.tight
    check.check(c.get("/metrics"), "metrics with an API key, not the token")
    check.check(c.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}),
                "metrics with the token")  # fmt: skip

    # A slow job (one chunk every 0.3 s): its open stream is the tenant's one reader.
    slow = _unique("m-slow")
    _fault(apis, kind="trickle", model=slow, interval_s=0.3)
    job_id = _submit(check, c, {**GEN, "model": slow, "max_tokens": 60}, "submit a slow job")
    wait_for(lambda: c.get(f"/v1/jobs/{job_id}").json()["status"] == "running",
             timeout_s=30, what="the slow job to run")  # fmt: skip
    with c.stream("GET", f"/v1/jobs/{job_id}/events") as reader:
        check.check(c.get(f"/v1/jobs/{job_id}/events"), "a second reader")
        # This API does not wait for a running job's cancel: the DELETE is a 409 at once.
        check.check(c.delete(f"/v1/jobs/{job_id}"), "delete a running job")
        check.check(c.post(f"/v1/jobs/{job_id}/cancel"), "cancel a running job")
        check.check_stream(reader, "the cancelled job's events")
    _finished(c, job_id)

    # A job with a webhook: its record shows where the webhook goes and how it went.
    hooked = _submit(check, c, {**GEN, "webhook_url": WEBHOOK_URL}, "submit with a webhook")
    _finished(c, hooked)
    record = c.get(f"/v1/jobs/{hooked}")
    check.check(record, "a job with a webhook")
    assert record.json()["webhook"]["url"] == WEBHOOK_URL, record.text
    check.check(c.get("/v1/jobs", params={"limit": 3}), "jobs with webhooks")
    check.check(c.post(f"/v1/jobs/{hooked}/cancel"), "cancel a finished job with a webhook")
    check.check(c.post("/v1/jobs", json={**GEN, "webhook_url": "http://10.0.0.1/hook"}),
                "a webhook URL the policy refuses")  # fmt: skip

    # Budgets: a tenant whose USD budget is spent gets a 402 for a submit and a retry.
    time.sleep(1.1)  # a fresh second for the submission rate
    priced = _submit(check, c, {**GEN, "model": PRICED_MODEL}, "submit a priced job")
    _finished(c, priced)
    budgets = BudgetRepository(Database(apis.database_url), cache_ttl_s=0)
    budgets.set(TENANT_O, Budget("day", "usd", 1e-9))
    try:
        check.check(c.post("/v1/jobs", json=GEN), "submit past the USD budget")
        time.sleep(1.1)
        check.check(c.post(f"/v1/jobs/{job_id}/retry"), "retry past the USD budget")
        check.check(c.get("/v1/usage"), "usage with a budget")
    finally:
        budgets.clear(TENANT_O)
        budgets.db.dispose()

    # Bodies: past the limit for any route (declared), for a submission of its kind, and
    # streamed without a length.
    for method, path in [("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"),
                         *_v1_routes(job_id)]:  # fmt: skip
        limit = SMALL_JOBS_BODY if (method, path) in _SUBMITS else SMALL_BODY
        answer = c.request(method, path, content=b"x" * (limit + 1),
                           headers={"Content-Type": "application/json"})  # fmt: skip
        check.check(answer, f"{method} {path} with a body too large")
    big_generate = {**GEN, "messages": [{"role": "user", "content": "x" * SMALL_BODY}]}
    time.sleep(1.1)  # a fresh second for the submission rate
    check.check(c.post("/v1/jobs", json=big_generate), "a generate body only embed may send")
    chunks = iter([b"x" * SMALL_JOBS_BODY, b"x" * SMALL_JOBS_BODY])
    check.check(c.post("/v1/jobs", content=chunks, headers={"Content-Type": "application/json"}),
                "a streamed body past the limit")  # fmt: skip

    # Submissions per second: a burst past 2 (a batch is one submission).
    time.sleep(1.1)
    for n in range(4):
        check.check(c.post("/v1/jobs", json=GEN), f"burst submission {n}")
    check.check(c.post("/v1/jobs/batch", json={"jobs": [GEN, GEN]}), "a batch in the burst")

    # Failed key checks: past 3 a second, every /v1 route answers 429 for a moment.
    with httpx.Client(base_url=str(c.base_url), timeout=30) as other:
        for method, path in _v1_routes(job_id):
            for _ in range(4):
                wrong = other.get("/v1/jobs", headers={"Authorization": "Bearer wrong"})
                check.check(wrong, "a wrong key, again")
            check.check(c.request(method, path), f"{method} {path} after failed keys")


def tour_broken(check: DocumentCheck, apis: Apis) -> None:
    """An API whose store and Redis are gone: 503 with the error body, never a 500."""
    c = apis.broken
    check.check(c.get("/healthz"), "health with nothing behind")
    check.check(c.get("/readyz"), "readiness with nothing behind")
    check.check(c.post("/v1/jobs", json=GEN), "submit to a lost store")
    for method, path in _v1_routes(UNKNOWN_ID)[1:]:
        body = {"json": {"jobs": [GEN]}} if (method, path) in _SUBMITS else {}
        check.check(c.request(method, path, **body), f"{method} {path} on a lost store")
    # A key that is not a bootstrap key is looked up in the store: which is gone.
    check.check(c.get("/v1/jobs", headers={"Authorization": f"Bearer aij_{'x' * 40}"}),
                "a key only the lost store could know")  # fmt: skip


@pytest.fixture(scope="module")
def toured(
    document: dict[str, Any],
    api_url: str,
    tight_api: str,
    broken_api: str,
    simulator: Any,
    database_url: str,
) -> DocumentCheck:
    """Every answer the tour provoked, held to the live document."""
    check = DocumentCheck(document)
    auth = {"Authorization": f"Bearer {KEY_A}"}
    own = {"Authorization": f"Bearer {KEY_O}"}
    with (
        httpx.Client(base_url=api_url, headers=auth, timeout=60) as main,
        httpx.Client(base_url=tight_api, headers=own, timeout=60) as tight,
        httpx.Client(base_url=broken_api, headers=own, timeout=60) as broken,
    ):
        apis = Apis(main, tight, broken, simulator.base_url, database_url)
        tour_main(check, apis)
        tour_tight(check, apis)
        tour_broken(check, apis)
    return check


def test_the_document_is_valid_openapi_with_our_ids_tags_and_error_body(
    document: dict[str, Any], api_url: str
) -> None:
    validate_openapi(document)
    assert "HTTPValidationError" not in str(document)
    check = DocumentCheck(document)
    ids = {(op.method.upper(), op.path): op.id for op in check.operations}
    assert ids == {
        ("GET", "/healthz"): "getHealth",
        ("GET", "/readyz"): "getReadiness",
        ("GET", "/metrics"): "getMetrics",
        ("POST", "/v1/jobs"): "submitJob",
        ("GET", "/v1/jobs"): "listJobs",
        ("GET", "/v1/jobs/{job_id}"): "getJob",
        ("POST", "/v1/jobs/{job_id}/cancel"): "cancelJob",
        ("GET", "/v1/jobs/{job_id}/events"): "streamJobEvents",
        ("POST", "/v1/jobs/{job_id}/token"): "createEventToken",
        ("POST", "/v1/jobs/batch"): "submitJobBatch",
        ("POST", "/v1/jobs/{job_id}/retry"): "retryJob",
        ("DELETE", "/v1/jobs/{job_id}"): "deleteJob",
        ("GET", "/v1/usage"): "getUsage",
    }
    for op in check.operations:
        assert op.spec.get("tags"), op.id
        for status, answer in op.spec["responses"].items():
            if status.startswith(("4", "5")) and (op.id, status) != ("getReadiness", "503"):
                schema = answer["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (op.id, status)
    docs = httpx.get(f"{api_url}/docs", timeout=30)
    assert docs.status_code == 200 and "/openapi.json" in docs.text


def test_the_job_body_and_result_are_unions_on_kind(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    body = document["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["discriminator"]["propertyName"] == "kind"
    answer = document["paths"]["/v1/jobs/{job_id}"]["get"]["responses"]["200"]
    job = answer["content"]["application/json"]["schema"]
    assert job["discriminator"]["mapping"] == {
        kind: f"#/components/schemas/{kind.capitalize()}Job"
        for kind in ("generate", "extract", "embed")
    }
    for kind, fields in (("Generate", {"text", "finish_reason"}), ("Extract", {"data"}),
                         ("Embed", {"embeddings", "dimensions"})):  # fmt: skip
        result = schemas[f"{kind}Job"]["properties"]["result"]
        assert {"$ref": f"#/components/schemas/{kind}Result"} in result["anyOf"]
        assert fields <= set(schemas[f"{kind}Result"]["properties"])
    stream = document["paths"]["/v1/jobs/{job_id}/events"]["get"]["responses"]
    assert set(stream["200"]["content"]) == {"text/event-stream"}
    assert "content" not in stream["204"]


def test_every_answer_matches_the_document(toured: DocumentCheck) -> None:
    wrong = [f"{s.what} ({s.operation} {s.status}): {p}" for s in toured.seen for p in s.problems]
    assert not wrong, "\n".join(wrong)


def test_every_documented_answer_was_provoked(toured: DocumentCheck) -> None:
    seen = {(s.operation, s.status) for s in toured.seen}
    assert toured.documented() - seen == set()
    assert seen - toured.documented() == set()


def test_no_answer_was_a_server_error(toured: DocumentCheck) -> None:
    errors = [(s.what, s.status) for s in toured.seen if s.status.startswith("5")]
    assert {status for _, status in errors} <= {"503"}, errors
