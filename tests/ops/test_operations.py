"""Operations: metrics that move, jobs accepted while the broker is down, Flower behind a
password showing safe arguments, and the compose file's promises."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from aijobs.devtools.redis_server import free_port
from aijobs.settings import Settings
from tests.conftest import KEY_A, LIMITED_MODEL
from tests.support import ApiProcess, clean_env, read_events, wait_for

ROOT = Path(__file__).resolve().parents[2]


def samples(text: str) -> dict[str, float]:
    """Metric sample name (with labels) -> value."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


def total(found: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in found.items() if k.startswith(prefix + "{"))


@pytest.mark.usefixtures("worker")
def test_metrics_move_after_a_run(api_url: str, client: httpx.Client, simulator: Any) -> None:
    before = samples(httpx.get(f"{api_url}/metrics").text)
    fault = {"kind": "server_error", "model": "metrics-model"}
    httpx.post(f"{simulator.base_url}/_sim/faults", json={"faults": [fault]}).raise_for_status()
    bodies = [
        {"kind": "generate", "model": "metrics-model", "max_tokens": 5,
         "messages": [{"role": "user", "content": "x"}]},
        {"kind": "extract", "model": "metrics-model", "text": "t",
         "schema": {"type": "object", "properties": {"a": {"type": "string"}}}},
        {"kind": "embed", "model": "metrics-model", "input": ["a", "b"], "dimensions": 4},
    ]  # fmt: skip
    limited = {"kind": "generate", "model": LIMITED_MODEL, "max_tokens": 2,
               "messages": [{"role": "user", "content": "x"}]}  # fmt: skip
    bodies += [limited] * 7  # a budget of 5 per 2 s: some of these wait for the limiter
    ids = [client.post("/v1/jobs", json=b).json()["id"] for b in bodies]
    for job_id in ids:
        read_events(client, job_id, timeout_s=60)
    after = samples(httpx.get(f"{api_url}/metrics").text)
    for name in (
        "aijobs_jobs_submitted_total",
        "aijobs_jobs_finished_total",
        "aijobs_job_queued_seconds_count",
        "aijobs_time_to_first_token_seconds_count",
        "aijobs_job_duration_seconds_count",
        "aijobs_tokens_total",
        "aijobs_provider_errors_total",
        "aijobs_retries_total",
        "aijobs_rate_limit_waits_total",
        "aijobs_rate_limit_wait_seconds_total",
    ):
        assert total(after, name) > total(before, name), name
    assert after["aijobs_tokens_total{model=metrics-model,type=completion}"] > 0
    assert "aijobs_queue_depth{queue=generate}" in after
    assert any(k.startswith("aijobs_stream_readers{") for k in after)


@pytest.fixture
def api_without_broker(settings: Settings) -> Iterator[str]:
    """An API process whose broker is down (a closed port); same job store as the others."""
    api = ApiProcess(
        free_port(),
        clean_env(
            REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
            DATABASE_URL=settings.database_url,
            AIJOBS_API_KEYS=settings.api_keys.get_secret_value(),
        ),
    )
    api.start()
    yield api.url
    api.stop()


@pytest.mark.usefixtures("worker")
def test_a_job_accepted_while_the_broker_is_down_still_runs(
    api_without_broker: str, client: httpx.Client
) -> None:
    headers = {"Authorization": f"Bearer {KEY_A}"}
    body = {"kind": "generate", "model": "m", "max_tokens": 4,
            "messages": [{"role": "user", "content": "x"}]}  # fmt: skip
    answer = httpx.post(f"{api_without_broker}/v1/jobs", json=body, headers=headers, timeout=30)
    assert answer.status_code == 202, answer.text
    assert httpx.get(f"{api_without_broker}/readyz").status_code == 503
    job_id = answer.json()["id"]
    # The reconciler of a worker that can reach the broker hands it over.
    events = read_events(client, job_id, timeout_s=60)
    assert events[-1].data == {"status": "succeeded"}


@pytest.fixture
def flower(redis_url: str, worker: Any) -> Iterator[str]:
    port = free_port()
    env = clean_env(REDIS_URL=redis_url, AIJOBS_FLOWER_BASIC_AUTH="ops:s3cret-pass")
    proc = subprocess.Popen(
        [sys.executable, "-m", "aijobs.cli", "flower", "--port", str(port),
         "--address", "127.0.0.1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _status(f"{url}/healthcheck") == 200, timeout_s=60)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)


def _status(url: str, **kwargs: Any) -> int:
    try:
        return httpx.get(url, timeout=2, **kwargs).status_code
    except httpx.HTTPError:
        return 0


def test_flower_sees_every_kind_with_safe_arguments(flower: str, client: httpx.Client) -> None:
    assert _status(f"{flower}/api/tasks") == 401
    assert _status(f"{flower}/api/tasks", auth=("ops", "wrong")) == 401
    secret = "canary-prompt-7f3a"
    bodies = [
        {"kind": "generate", "model": "m", "max_tokens": 3,
         "messages": [{"role": "user", "content": secret}]},
        {"kind": "extract", "model": "m", "text": secret,
         "schema": {"type": "object", "properties": {"a": {"type": "string"}}}},
        {"kind": "embed", "model": "m", "input": [secret], "dimensions": 4},
    ]  # fmt: skip
    ids = {client.post("/v1/jobs", json=b).json()["id"]: b["kind"] for b in bodies}
    for job_id in ids:
        read_events(client, job_id)

    def seen() -> dict[str, Any] | None:
        tasks = httpx.get(f"{flower}/api/tasks", auth=("ops", "s3cret-pass")).json()
        mine = {t["args"]: t for t in tasks.values() if any(i in str(t["args"]) for i in ids)}
        return tasks if len(mine) == 3 else None

    tasks = wait_for(seen, timeout_s=30, interval_s=0.5)
    for task in tasks.values():
        job_id = next((i for i in ids if i in str(task["args"])), None)
        if job_id is None:
            continue
        assert task["name"] == f"aijobs.{ids[job_id]}"
        assert task["args"] == repr([job_id]) or task["args"] == f"('{job_id}',)"
        assert ids[job_id] in str(task["kwargs"])
        assert secret not in str(task)


def test_compose_file_keeps_its_promises() -> None:
    """The fleet's shape; each security promise has its own tests under tests/ops/."""
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    expected = {"redis", "postgres", "migrate", "api", "worker-generate", "worker-extract",
                "worker-embed", "flower", "prometheus"}  # fmt: skip
    assert expected <= set(services)
    published = {name for name, svc in services.items() if svc.get("ports")}
    assert published == {"api", "flower"}
    for name in ("redis", "postgres", "api", "worker-generate", "worker-extract", "worker-embed",
                 "flower", "prometheus"):  # fmt: skip
        assert "healthcheck" in services[name], name
    redis_conf = (ROOT / "ops" / "redis.conf").read_text().split("\n")
    for line in ("appendonly yes", "appendfsync everysec", "maxmemory-policy noeviction",
                 "protected-mode yes", "aclfile /run/secrets/redis-users.acl"):  # fmt: skip
        assert line in redis_conf, line
    assert any(line.startswith("maxmemory ") for line in redis_conf)
    assert "redis.conf" in " ".join(services["redis"]["command"])
    assert services["redis"]["secrets"] == ["redis-users.acl"]
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["restart"] == "no"
    for name in ("worker-generate", "worker-extract", "worker-embed"):
        command = services[name]["command"]
        queue = command[command.index("--queues") + 1]
        assert name == f"worker-{queue}"
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )
        assert services[name]["stop_grace_period"] == "60s"
    assert "ops/secrets/flower.env" in services["flower"]["env_file"]
    assert services["api"]["build"]["dockerfile"] == "ops/Dockerfile"
    assert (ROOT / "ops" / "Dockerfile").exists()


def test_flower_refuses_to_run_without_credentials(redis_url: str) -> None:
    refused = subprocess.run(
        [sys.executable, "-m", "aijobs.cli", "flower", "--port", str(free_port())],
        env=clean_env(REDIS_URL=redis_url), capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "AIJOBS_FLOWER_BASIC_AUTH" in refused.stderr and "refusing" in refused.stderr
