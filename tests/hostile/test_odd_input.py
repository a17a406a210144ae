"""Whatever a client puts in a header, a parameter, a cursor or a token: a 4xx that says
what, never a 5xx or a traceback."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies

from aijobs.store import Database
from aijobs.store.api_keys import KeyRepository
from tests.conftest import KEY_A, TENANT_A
from tests.support import read_events

pytestmark = pytest.mark.usefixtures("worker")


def _b64(text: bytes) -> str:
    return base64.urlsafe_b64encode(text).decode().rstrip("=")


@pytest.fixture(scope="module")
def job_id(api_url: str) -> str:
    with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {KEY_A}"}) as c:
        job = c.post(
            "/v1/jobs",
            json={
                "kind": "generate",
                "model": "m",
                "max_tokens": 3,
                "messages": [{"role": "user", "content": "x"}],
            },
        ).json()
        read_events(c, job["id"])
    return str(job["id"])


ODD_HEADERS: list[tuple[str, bytes]] = [
    ("Authorization", b"Bearer \xc3\xbc"),
    ("Authorization", b"Bearer " + b"x" * 20_000),
    ("Authorization", b"Basic YWxhZGRpbjpvcGVuc2VzYW1l"),
    ("Authorization", b"Bearer"),
    ("Authorization", b"bearer \xff\xfe"),
    ("Last-Event-ID", "²".encode()),
    ("Last-Event-ID", "٣".encode()),
    ("Last-Event-ID", b"-1"),
    ("Last-Event-ID", b"1e5"),
    ("Last-Event-ID", b"9" * 60),
    ("Last-Event-ID", b"\xff"),
    ("Idempotency-Key", "ü".encode()),
    ("Idempotency-Key", b"x" * 300),
    ("Content-Type", b"application/json; charset=\xff"),
]
ODD_PARAMS: list[dict[str, Any]] = [
    {"after": "-1"},
    {"after": str(2**80)},
    {"after": "abc"},
    {"after": "1.5"},
    {"cursor": "!!!"},
    {"cursor": _b64(b"2024-01-01T00:00:00|abc")},  # a timestamp without a zone
    {"cursor": _b64(b"\xff\xfe|x")},
    {"cursor": "x" * 5000},
    {"limit": "0"},
    {"limit": "100000"},
    {"status": "nope"},
    {"kind": "nope"},
    {"token": "abc.\u00e9"},
    {"token": "x" * 5000},
    {"token": "a.b.c"},
    {"token": _b64(b'["x","y",1]') + ".sig"},
    {"format": "nope"},
]


def test_odd_headers_params_and_tokens_get_no_server_error(api_url: str, job_id: str) -> None:
    paths = ["/v1/jobs", f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/events",
             f"/v1/jobs/{'0' * 500}", "/v1/jobs/..%2F..%2Fetc", "/v1/jobs/%00"]  # fmt: skip
    seen: list[tuple[str, Any, int]] = []
    with httpx.Client(base_url=api_url, timeout=10) as c:
        for path in paths:
            for name, value in ODD_HEADERS:
                headers = {"Authorization": f"Bearer {KEY_A}".encode(), name.encode(): value}
                answer = c.get(path, headers=headers, params={"after": 10_000})
                seen.append((f"GET {path} {name}", value[:20], answer.status_code))
            for params in ODD_PARAMS:
                answer = c.get(path, headers={"Authorization": f"Bearer {KEY_A}"}, params=params)
                seen.append((f"GET {path}", params, answer.status_code))
            for name, value in ODD_HEADERS:
                answer = c.post("/v1/jobs", content=b"{}", headers={name.encode(): value})
                seen.append((f"POST {name}", value[:20], answer.status_code))
    errors = [s for s in seen if s[2] >= 500]
    assert errors == [], errors
    assert ("GET /v1/jobs", ODD_PARAMS[5], 422) in seen  # the zone-less cursor


def test_a_deep_body_is_a_422(client: httpx.Client) -> None:
    deep = b'{"kind":"generate","model":"m","messages":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    answer = client.post("/v1/jobs", content=deep, headers={"Content-Type": "application/json"})
    assert answer.status_code == 422, answer.text
    meta: dict[str, Any] = {}
    for _ in range(20):
        meta = {"a": meta}
    body = {"kind": "generate", "model": "m", "metadata": meta,
            "messages": [{"role": "user", "content": "x"}]}  # fmt: skip
    answer = client.post("/v1/jobs", json=body)
    assert answer.status_code == 422 and answer.json()["detail"].startswith("metadata: nested")
    body["metadata"] = {f"k{i}": "v" * 500 for i in range(60)}  # 30 KB
    answer = client.post("/v1/jobs", json=body)
    assert answer.status_code == 422 and "metadata:" in answer.json()["detail"]


def test_an_event_token_dies_with_its_key(api_url: str, settings: Any, job_id: str) -> None:
    keys = KeyRepository(Database(settings.database_url), cache_ttl_s=0)
    row, key = keys.create(TENANT_A, "token test")
    issued = httpx.post(f"{api_url}/v1/jobs/{job_id}/token",
                        headers={"Authorization": f"Bearer {key}"}).json()  # fmt: skip
    assert issued["events_url"].startswith("/v1/jobs/")  # no public URL set: a path
    url = f"{api_url}{issued['events_url']}"
    assert httpx.get(f"{url}&after=1", timeout=10).status_code == 200
    assert keys.revoke(row.id)
    assert httpx.get(f"{url}&after=1", timeout=10).status_code == 401
    keys.db.dispose()


@given(
    name=strategies.sampled_from(["Authorization", "Last-Event-ID", "Idempotency-Key"]),
    value=strategies.binary(max_size=200).filter(lambda b: b"\r" not in b and b"\n" not in b),
    after=strategies.one_of(strategies.none(), strategies.text(max_size=30)),
)
@settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_any_header_or_parameter_value_is_answered_without_a_server_error(
    api_url: str, job_id: str, name: str, value: bytes, after: str | None
) -> None:
    headers = {b"Authorization": f"Bearer {KEY_A}".encode(), name.encode(): value.strip()}
    params = {} if after is None else {"after": after, "cursor": after}
    with httpx.Client(base_url=api_url, timeout=10) as c:
        for path in ("/v1/jobs", f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/events"):
            try:
                answer = c.get(path, headers=headers, params=params)
            except httpx.LocalProtocolError:
                assume(False)  # a value no HTTP client may send (a NUL byte, say)
                return
            assert answer.status_code < 500, (name, value, after, answer.text[:300])
