"""One tenant cannot freeze, starve or drain the fleet for another."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx

from aijobs.devtools.simulator import RunningSimulator
from tests.conftest import KEY_A, KEY_B, TENANT_A, TENANT_B
from tests.stack import running_stack
from tests.support import wait_for

KEYS = f"{TENANT_A}:{KEY_A},{TENANT_B}:{KEY_B}"
EVIL = "^(([a-z]+ ?)+)+\\d$"  # nested quantifiers: exponential on a backtracking engine


def pace(simulator: RunningSimulator, tokens_per_second: float) -> None:
    httpx.put(
        f"{simulator.base_url}/_sim/config", json={"tokens_per_second": tokens_per_second}
    ).raise_for_status()


def generate(model: str = "m", max_tokens: int = 5, prompt: str = "hi") -> dict[str, Any]:
    return {"kind": "generate", "model": model, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": prompt}]}  # fmt: skip


def test_a_backtracking_pattern_freezes_nobody(tmp_path: Path, simulator: RunningSimulator) -> None:
    with running_stack(tmp_path, simulator, api_keys=KEYS) as stack:
        stack.start_api()
        stack.start_worker("one")
        # The model's answer is forced (enum) to the string the pattern backtracks on.
        victim = "a" * 40 + "!"
        code = {"type": "string", "pattern": EVIL, "enum": [victim]}
        schema = {"type": "object", "properties": {"code": code}, "required": ["code"]}
        with stack.client(KEY_A) as a, stack.client(KEY_B) as b:
            evil = a.post("/v1/jobs", json={"kind": "extract", "model": "m", "text": "t",
                                            "schema": schema})  # fmt: skip
            assert evil.status_code == 202, evil.text
            wait_for(lambda: stack.repo.get(evil.json()["id"]).status != "queued", timeout_s=20)
            other = b.post("/v1/jobs", json=generate()).json()
            assert stack.finished(other["id"], timeout_s=20).status == "succeeded"
            done = stack.finished(evil.json()["id"], timeout_s=30)
            assert done.status == "failed" and done.error["code"] == "invalid_output"


def test_a_ref_fan_out_and_a_deep_schema_are_refused_at_submit(client: httpx.Client) -> None:
    defs = {f"d{i}": {"anyOf": [{"$ref": f"#/$defs/d{i + 1}"}, {"$ref": f"#/$defs/d{i + 1}"}]}
            for i in range(30)}  # fmt: skip
    defs["d30"] = {"type": "string"}
    fan = {"type": "object", "properties": {"x": {"$ref": "#/$defs/d0"}}, "$defs": defs}
    answer = client.post("/v1/jobs", json={"kind": "extract", "model": "m", "text": "t",
                                           "schema": fan})  # fmt: skip
    assert answer.status_code == 422
    assert "once its $refs are written out" in answer.json()["detail"]
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(150):
        deep = {"type": "object", "properties": {"a": deep}}
    answer = client.post("/v1/jobs", json={"kind": "extract", "model": "m", "text": "t",
                                           "schema": deep})  # fmt: skip
    assert answer.status_code == 422
    assert "nested deeper" in answer.json()["detail"]
    lookaround = {"type": "object", "properties": {"x": {"type": "string", "pattern": "(?=a)a"}}}
    answer = client.post("/v1/jobs", json={"kind": "extract", "model": "m", "text": "t",
                                           "schema": lookaround})  # fmt: skip
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith("schema.properties.x.pattern:")


def test_a_huge_max_tokens_cannot_drain_anyone_elses_budget(
    tmp_path: Path, simulator: RunningSimulator
) -> None:
    limits = '{"shared": {"tpm": 20000, "window_s": 60}}'
    with running_stack(tmp_path, simulator, api_keys=KEYS, AIJOBS_RATE_LIMITS=limits) as stack:
        stack.start_api()
        stack.start_worker("one")
        with stack.client(KEY_A) as a, stack.client(KEY_B) as b:
            refused = a.post("/v1/jobs", json=generate("shared", max_tokens=1_000_000))
            assert refused.status_code == 422 and "max_tokens: at most" in refused.json()["detail"]
            greedy = [
                a.post(
                    "/v1/jobs", json=generate("shared", max_tokens=32_000, prompt=f"g{i}")
                ).json()
                for i in range(4)
            ]
            small = b.post("/v1/jobs", json=generate("shared", max_tokens=5)).json()
            assert stack.finished(small["id"], timeout_s=20).status == "succeeded"
            waits = [d for _, e, d in stack.events(small["id"])
                     if e == "status" and d.get("reason") == "rate_limit"]  # fmt: skip
            assert waits == [], waits  # never deferred for another tenant's spending
            assert all(stack.repo.get(j["id"]).status == "running" for j in greedy)


def test_one_tenants_backlog_does_not_starve_another(
    tmp_path: Path, simulator: RunningSimulator
) -> None:
    with running_stack(tmp_path, simulator, api_keys=KEYS) as stack:
        stack.start_api()
        pace(simulator, 20)
        stack.start_worker("eight", "--concurrency", "8")
        with stack.client(KEY_A) as a, stack.client(KEY_B) as b:
            backlog = [a.post("/v1/jobs", json=generate(max_tokens=60, prompt=f"a{i}")).json()
                       for i in range(50)]  # fmt: skip
            # The fleet's 8 slots are full of A's jobs, 42 more of them wait.
            wait_for(lambda: sum(1 for j in backlog if stack.repo.get(j["id"]).status
                                 == "running") >= 8, timeout_s=20)  # fmt: skip
            submitted = time.monotonic()
            mine = b.post("/v1/jobs", json=generate(max_tokens=3)).json()
            started = wait_for(lambda: stack.repo.get(mine["id"]).started_at, timeout_s=15)
            took = time.monotonic() - submitted
            a_started = sum(1 for j in backlog if stack.repo.get(j["id"]).started_at)
        # B's job went to the first free slot, not behind A's 42.
        assert started and took < 6, took
        assert a_started < 20, a_started
        threading.Event().wait(0)  # nothing to wait for: the stack stops the rest
