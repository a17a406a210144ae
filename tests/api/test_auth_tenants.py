"""Bearer keys and tenant scoping: another tenant's job is exactly an unknown job."""

from __future__ import annotations

import httpx
import pytest

from tests.support import read_events

pytestmark = pytest.mark.usefixtures("worker")


def test_missing_or_wrong_key_is_401(api_url: str) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic a2V5"}):
        for method, path in (("GET", "/v1/jobs"), ("POST", "/v1/jobs"), ("GET", "/v1/jobs/x")):
            answer = httpx.request(method, api_url + path, headers=headers, json={})
            assert answer.status_code == 401, (headers, path)
            assert answer.headers["WWW-Authenticate"] == "Bearer"


def test_health_needs_no_key(api_url: str) -> None:
    assert httpx.get(api_url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(api_url + "/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "redis": "ok", "database": "ok"}


def test_other_tenants_job_is_404_like_an_unknown_one(
    client: httpx.Client, client_b: httpx.Client
) -> None:
    body = {"kind": "generate", "model": "m", "messages": [{"role": "user", "content": "x"}]}
    job = client.post("/v1/jobs", json=body).json()
    read_events(client, job["id"])  # let it finish

    unknown = "0" * 32
    for path in (f"/v1/jobs/{job['id']}", f"/v1/jobs/{job['id']}/events"):
        theirs = client_b.get(path)
        missing = client_b.get(path.replace(job["id"], unknown))
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json() == missing.json() == {"detail": "job not found"}
    listed = client_b.get("/v1/jobs", params={"limit": 100}).json()["data"]
    assert job["id"] not in {j["id"] for j in listed}
    assert client.get(f"/v1/jobs/{job['id']}").status_code == 200
