"""Flower tells the truth: each way a delivery ends is its own Celery state (a failed job's
task is FAILURE with the job's error code, a cancelled one REVOKED, one back in the fair
queue RETRY, acked and never sent again by Celery), no prompt, key or provider message
reaches Flower, and Flower keeps that history across a restart.

Real parts: an `aijobs worker` process, `aijobs flower` processes (persistent, restarted),
a private Redis and store (tests/stack.py), the simulator's scripted faults.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import sync_playwright

from aijobs.devtools.harness import Harness, Service, aijobs_argv, child_env, free_port, wait_url
from aijobs.devtools.simulator import RunningSimulator
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.conftest import TENANT_A
from tests.stack import Stack, running_stack
from tests.support import wait_for

REPO = Path(__file__).resolve().parents[2]
FLOWER_AUTH = ("ops", "flower-test-pass")
CANARY = uuid.uuid4().hex
PROMPT = f"PROMPT-CANARY-{CANARY}"
TENANT_KEY = f"APIKEY-CANARY-{CANARY}"
PROVIDER_KEY = f"sk-PROVIDERKEY-CANARY-{CANARY}"
PROVIDER_MESSAGE = f"PROVIDER-MESSAGE-CANARY-{CANARY}: your prompt {PROMPT} is refused"


class Flower:
    """`aijobs flower` with a persistent --db, as a process that is stopped and started."""

    def __init__(self, workdir: Path, redis_url: str) -> None:
        self.harness = Harness(workdir)
        self.db = workdir / "flower.db"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # What compose gives Flower: Redis and its own login, no store, no provider key.
        self.env = child_env(
            redis_url=redis_url,
            aijobs={"flower_basic_auth": ":".join(FLOWER_AUTH), "log_level": "INFO"},
        )
        self.env.pop("OPENAI_API_KEY", None)
        self.service: Service | None = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        argv = aijobs_argv("flower", "--port", str(self.port), "--address", "127.0.0.1",
                           "--db", str(self.db))  # fmt: skip
        child = self.harness.spawn(f"flower-{self.runs}", argv, env=self.env)
        self.service = Service(child.name, child.process, child.log_path, port=self.port)
        self.harness.children[-1] = self.service
        wait_url(f"{self.url}/healthcheck", timeout_s=60, watch=[self.service])

    def stop(self) -> None:
        """SIGTERM, as compose and `aijobs dev` stop it: Flower saves its state and exits."""
        assert self.service is not None
        self.service.stop()
        assert self.service.returncode == 0, self.service.log_tail()

    def listens(self) -> bool:
        """Whether its event receiver is live: its event state knows a worker (heartbeats)."""
        try:
            answer = httpx.get(f"{self.url}/api/workers", params={"status": "true"},
                               auth=FLOWER_AUTH, timeout=5)  # fmt: skip
        except httpx.HTTPError:
            return False
        return answer.status_code == 200 and any(answer.json().values())

    def tasks(self) -> dict[str, dict[str, Any]]:
        answer = httpx.get(f"{self.url}/api/tasks", auth=FLOWER_AUTH, timeout=10)
        answer.raise_for_status()
        tasks: dict[str, dict[str, Any]] = answer.json()
        return tasks

    def info(self, task_id: str) -> dict[str, Any]:
        answer = httpx.get(f"{self.url}/api/task/info/{task_id}", auth=FLOWER_AUTH, timeout=10)
        answer.raise_for_status()
        info: dict[str, Any] = answer.json()
        return info

    def close(self) -> None:
        self.harness.close()


def tasks_of(tasks: dict[str, dict[str, Any]], job_id: str) -> list[dict[str, Any]]:
    """The tasks of one job (its id is the task's only argument), oldest first."""
    mine = [t for t in tasks.values() if job_id in str(t.get("args"))]
    return sorted(mine, key=lambda t: t.get("received") or t.get("timestamp") or 0)


@dataclass
class Run:
    """The jobs run with Flower watching, and what Flower was shown."""

    stack: Stack
    flower: Flower
    jobs: dict[str, str] = field(default_factory=dict)  # what -> job id


def _fault(simulator: RunningSimulator, **spec: Any) -> None:
    answer = httpx.post(f"{simulator.base_url}/_sim/faults", json={"faults": [spec]})
    answer.raise_for_status()


def _submit(stack: Stack, client: httpx.Client, model: str, max_tokens: int = 8) -> str:
    body = {"kind": "generate", "model": model, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": PROMPT}]}  # fmt: skip
    answer = client.post("/v1/jobs", json=body)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, simulator: RunningSimulator) -> Iterator[Run]:
    """A succeeded, a failed, a cancelled and a retried job, with Flower watching."""
    tmp = tmp_path_factory.mktemp("flower-states")
    httpx.post(f"{simulator.base_url}/_sim/reset").raise_for_status()
    with running_stack(
        tmp, simulator, api_keys=f"{TENANT_A}:{TENANT_KEY}", OPENAI_API_KEY=PROVIDER_KEY
    ) as stack:
        stack.start_api()
        flower = Flower(tmp / "flower", stack.redis_url)
        try:
            flower.start()
            stack.start_worker("worker")
            result = Run(stack, flower)
            # Flower sees only the events sent while it listens.
            wait_for(flower.listens, timeout_s=60, interval_s=0.2)
            with stack.client(TENANT_KEY) as client:
                # A first job, seen by Flower: the worker consumes and its events reach it.
                probe = _submit(stack, client, "m")
                wait_for(lambda: tasks_of(flower.tasks(), probe), timeout_s=60, interval_s=0.2)
                stack.finished(probe)

                _fault(simulator, kind="bad_request", model="failing-model",
                       message=PROVIDER_MESSAGE)  # fmt: skip
                _fault(simulator, kind="server_error", model="flaky-model")
                _fault(simulator, kind="trickle", model="slow-model", interval_s=0.2)
                result.jobs = {
                    "succeeded": _submit(stack, client, "m"),
                    "failed": _submit(stack, client, "failing-model"),
                    "retried": _submit(stack, client, "flaky-model"),
                    "cancelled": _submit(stack, client, "slow-model", max_tokens=500),
                }
                cancelled = result.jobs["cancelled"]
                wait_for(lambda: any(e == "delta" for _, e, _ in stack.events(cancelled)),
                         timeout_s=60, interval_s=0.1)  # fmt: skip
                assert client.post(f"/v1/jobs/{cancelled}/cancel").status_code == 202
                for job_id in result.jobs.values():
                    stack.finished(job_id)
            yield result
        finally:
            flower.close()


def _settled(run: Run) -> dict[str, list[dict[str, Any]]]:
    """Each job's tasks once Flower has seen every one of them end."""
    ended = {"SUCCESS", "FAILURE", "REVOKED", "RETRY"}
    wanted = {"succeeded": 1, "failed": 1, "cancelled": 1, "retried": 2}

    def seen() -> dict[str, list[dict[str, Any]]] | None:
        tasks = run.flower.tasks()
        found = {what: tasks_of(tasks, job_id) for what, job_id in run.jobs.items()}
        for what, count in wanted.items():
            if len(found[what]) != count or any(t["state"] not in ended for t in found[what]):
                return None
        return found

    found: dict[str, list[dict[str, Any]]] = wait_for(seen, timeout_s=60, interval_s=0.3)
    return found


def _states(found: dict[str, list[dict[str, Any]]]) -> dict[str, list[tuple[str, str | None]]]:
    return {what: [(t["state"], t["exception"]) for t in tasks] for what, tasks in found.items()}


def test_flower_shows_how_each_job_ended_and_keeps_it_across_a_restart(run: Run) -> None:
    stack = run.stack
    rows = {what: stack.repo.get(job_id) for what, job_id in run.jobs.items()}
    assert {what: row.status for what, row in rows.items()} == {
        "succeeded": "succeeded", "failed": "failed", "cancelled": "cancelled",
        "retried": "succeeded",
    }  # fmt: skip
    code = rows["failed"].error["code"]
    assert code == "bad_request"
    reason = next(d["reason"] for _, e, d in stack.events(run.jobs["retried"])
                  if e == "status" and d["status"] == "retrying")  # fmt: skip

    found = _settled(run)
    assert _states(found) == {
        "succeeded": [("SUCCESS", None)],
        "failed": [("FAILURE", f"JobFailedError('{code}')")],
        "cancelled": [("REVOKED", None)],
        # The wait is in our queue: the task that handed the job back is RETRY, and the
        # next delivery is a new task (the feeder's), not Celery's resend of the old one.
        "retried": [("RETRY", f"JobWaitingError('{reason}')"), ("SUCCESS", None)],
    }
    retried = found["retried"]
    assert retried[0]["uuid"] != retried[1]["uuid"]
    assert all(not t.get("retries") for t in retried)

    # Every message was acked (a failure, a revoke and a retry too): nothing is left
    # unacked for the broker to deliver again after its visibility timeout.
    with stack.redis() as rds:
        wait_for(lambda: rds.hlen("unacked") == 0, timeout_s=30, interval_s=0.2)
        assert rds.llen("generate") == 0

    # No prompt, key or provider message anywhere Flower shows a task (list and details,
    # tracebacks included).
    shown = json.dumps(run.flower.tasks())
    shown += "".join(json.dumps(run.flower.info(t["uuid"])) for ts in found.values() for t in ts)
    assert CANARY not in shown

    # Flower stopped and started again: the same tasks in the same states.
    before = {t["uuid"]: (t["state"], t["exception"]) for ts in found.values() for t in ts}
    run.flower.stop()
    assert run.flower.db.exists() or list(run.flower.db.parent.glob("flower.db*"))
    run.flower.start()
    tasks = run.flower.tasks()
    after = {u: (tasks[u]["state"], tasks[u]["exception"]) for u in before if u in tasks}
    assert after == before


def test_a_screenshot_of_flower_shows_the_failed_job(run: Run, tmp_path: Path) -> None:
    """Flower's task list as a person sees it: the failed job is FAILURE with its code.
    Written to ops/screenshots/flower-tasks.png with AIJOBS_UPDATE_SCREENSHOTS=1."""
    _settled(run)
    if not CHROMIUM.exists():
        advice = f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does this)"
        if os.environ.get("AIJOBS_REQUIRE_BROWSER") == "1":
            pytest.fail(advice)
        pytest.skip(advice)  # as tests/browser/ does: the README's test command needs no browser
    if os.environ.get("AIJOBS_UPDATE_SCREENSHOTS") == "1":
        shot = REPO / "ops" / "screenshots" / "flower-tasks.png"
    else:
        shot = tmp_path / "flower-tasks.png"
    failed = run.jobs["failed"]
    with sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = browser.new_context(
                viewport={"width": 1920, "height": 700},
                http_credentials={"username": FLOWER_AUTH[0], "password": FLOWER_AUTH[1]},
            )
            page = context.new_page()
            page.set_default_timeout(30_000)
            page.goto(f"{run.flower.url}/tasks")
            row = page.locator("tr", has_text=failed)
            row.wait_for()
            assert "FAILURE" in row.inner_text()
            assert "JobFailedError('bad_request')" in row.inner_text()
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
