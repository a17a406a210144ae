"""Submitting a job with a webhook: a URL the policy refuses is a 422 that names
`webhook_url` and queues nothing; an accepted one (or the tenant's default) is the job's,
shown in its record."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from pydantic import SecretStr

from aijobs.api.main import create_app
from aijobs.settings import Settings
from tests.conftest import KEY_A, KEY_B, TENANT_B, serve_in_thread
from tests.support import queued

LISTED_HOOK = "http://127.0.0.1:9/hooks/aijobs"  # allow-listed; never called (no sender here)
TENANT_DEFAULT = "https://hooks.tenant-b.example/aijobs"


def generate(**extra: Any) -> dict[str, Any]:
    return {"kind": "generate", "model": "m-webhooks", "max_tokens": 5,
            "messages": [{"role": "user", "content": "hi"}], **extra}  # fmt: skip


@pytest.fixture(scope="module")
def webhook_api(settings: Settings) -> Iterator[str]:
    """The API on the session's Redis and store, with webhooks on."""
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the spec's example secret
    configured = settings.model_copy(
        update={
            "webhook_secret": SecretStr(secret),
            "webhook_allowed_hosts": ["127.0.0.1"],
            "webhook_tenant_urls": {TENANT_B: TENANT_DEFAULT},
        }
    )
    server, thread, url = serve_in_thread(create_app(configured))
    yield url
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def api(webhook_api: str) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {KEY_A}"}
    with httpx.Client(base_url=webhook_api, headers=headers, timeout=30) as client:
        yield client


def job_count(client: httpx.Client) -> int:
    return len(client.get("/v1/jobs", params={"limit": 100}).json()["data"])


@pytest.mark.parametrize(
    ("url", "phrase"),
    [
        ("https://10.0.0.5/hook", "private address"),
        ("https://192.168.0.10/hook", "private address"),
        ("https://127.0.0.2/hook", "loopback"),  # (127.0.0.1 is listed here, 127.0.0.2 not)
        ("https://[::ffff:127.0.0.1]/hook", "loopback"),
        ("https://[::1]/hook", "loopback"),
        ("https://0.0.0.0/hook", "unspecified"),
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("https://localhost/hook", "local name"),
        ("http://hooks.example.com/hook", "must be https"),
        ("ftp://hooks.example.com/hook", "must be an https"),
        ("https://user:pw@hooks.example.com/hook", "credentials"),
    ],
)
def test_a_refused_url_is_422_naming_webhook_url_and_queues_nothing(
    api: httpx.Client, rds: redis.Redis, url: str, phrase: str
) -> None:
    before_jobs, before_queue = job_count(api), queued(rds)
    answer = api.post("/v1/jobs", json=generate(webhook_url=url))
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert detail.startswith("webhook_url: "), detail
    assert phrase in detail
    assert job_count(api) == before_jobs
    assert queued(rds) <= before_queue


def test_a_url_that_is_not_a_string_is_422_naming_webhook_url(api: httpx.Client) -> None:
    answer = api.post("/v1/jobs", json=generate(webhook_url=5))
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith("webhook_url:")


def test_without_a_secret_webhooks_are_refused(client: httpx.Client) -> None:
    # The session's API has no AIJOBS_WEBHOOK_SECRET: it could never sign.
    answer = client.post("/v1/jobs", json=generate(webhook_url="https://hooks.example.com/x"))
    assert answer.status_code == 422
    assert answer.json()["detail"] == (
        "webhook_url: webhooks are off here (no secret, or AIJOBS_WEBHOOKS_ENABLED=false)"
    )


def test_an_accepted_url_is_the_jobs_and_shows_in_its_record(api: httpx.Client) -> None:
    answer = api.post("/v1/jobs", json=generate(webhook_url=LISTED_HOOK))
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert job["webhook"] == {
        "url": LISTED_HOOK, "state": "waiting", "deliveries": [], "delivered_at": None,
    }  # fmt: skip
    shown = api.get(f"/v1/jobs/{job['id']}").json()["webhook"]
    assert shown["url"] == LISTED_HOOK
    listed = {j["id"]: j for j in api.get("/v1/jobs", params={"limit": 100}).json()["data"]}
    assert listed[job["id"]]["webhook"]["url"] == LISTED_HOOK
    plain = api.post("/v1/jobs", json=generate()).json()
    assert plain["webhook"] is None


def test_a_tenant_default_applies_to_its_jobs_that_name_none(webhook_api: str) -> None:
    headers = {"Authorization": f"Bearer {KEY_B}"}
    with httpx.Client(base_url=webhook_api, headers=headers, timeout=30) as tenant_b:
        job = tenant_b.post("/v1/jobs", json=generate()).json()
        assert job["webhook"]["url"] == TENANT_DEFAULT
        own = tenant_b.post("/v1/jobs", json=generate(webhook_url=LISTED_HOOK)).json()
        assert own["webhook"]["url"] == LISTED_HOOK


def test_the_idempotency_key_covers_the_webhook_url(api: httpx.Client) -> None:
    key = {"Idempotency-Key": f"webhooks-{uuid.uuid4().hex}"}
    first = api.post("/v1/jobs", json=generate(webhook_url=LISTED_HOOK), headers=key)
    again = api.post("/v1/jobs", json=generate(webhook_url=LISTED_HOOK), headers=key)
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    other = api.post("/v1/jobs", json=generate(webhook_url=LISTED_HOOK + "2"), headers=key)
    assert other.status_code == 409
