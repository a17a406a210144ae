"""The whole fleet on a Redis run with the fleet's own config and ACL: the `aijobs` user's
rules must allow everything the API, the workers, Flower and the operators' commands do,
and Redis must refuse nothing of it (its ACL log stays empty)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

from aijobs.devtools.harness import Harness, aijobs_argv, child_env, free_port
from aijobs.devtools.harness.wait import wait_url
from aijobs.devtools.simulator import RunningSimulator
from tests.conftest import KEY_A, TENANT_A
from tests.ops.fleet import fleet_redis, redis_password, written_secrets
from tests.support import read_events, wait_for

FLOWER_LOGIN = ("ops", "flower-password-for-tests")

JOBS = [
    {"kind": "generate", "model": "m", "max_tokens": 5,
     "messages": [{"role": "user", "content": "hello"}]},
    {"kind": "extract", "model": "m", "text": "t",
     "schema": {"type": "object", "properties": {"a": {"type": "string"}}}},
    {"kind": "embed", "model": "m", "input": ["a", "b"], "dimensions": 4},
]  # fmt: skip


def test_api_workers_flower_and_operator_commands_run_as_the_acl_user(
    tmp_path: Path, simulator: RunningSimulator
) -> None:
    secrets = written_secrets(tmp_path / "secrets")
    acl = (secrets / "redis-users.acl").read_text()
    with fleet_redis(tmp_path / "redis", acl) as server, Harness(tmp_path / "run") as harness:
        env = child_env(
            redis_url=server.url("aijobs", redis_password(secrets)),
            database_url=harness.sqlite_url(),
            openai_base_url=simulator.api_base,
            openai_api_key="sk-test",
            aijobs={
                "api_keys": f"{TENANT_A}:{KEY_A}",
                "flower_basic_auth": ":".join(FLOWER_LOGIN),
                "reconcile_interval_s": 0.5,
            },
        )
        api = harness.start_api(env)
        harness.start_worker(env, queues=["generate", "extract", "embed"], concurrency=4)
        flower_port = free_port()
        flower = harness.spawn(
            "flower",
            aijobs_argv("flower", "--port", str(flower_port), "--address", "127.0.0.1"),
            env=env,
        )
        flower_url = f"http://127.0.0.1:{flower_port}"
        wait_url(f"{flower_url}/healthcheck", watch=[flower])

        headers = {"Authorization": f"Bearer {KEY_A}"}
        with httpx.Client(base_url=api.url, headers=headers, timeout=30) as client:
            ids = [client.post("/v1/jobs", json=body).json()["id"] for body in JOBS]
            for job_id in ids:
                assert read_events(client, job_id)[-1].data == {"status": "succeeded"}

            # An operator's command with the same REDIS_URL (SCAN and DEL on streams).
            assert "purged" in run_aijobs(env, "purge", "--older-than-s", "3600")

        # Flower reads task events (pub/sub) and the queues' lengths as the same user.
        def flower_sees_all() -> bool:
            tasks = httpx.get(f"{flower_url}/api/tasks", auth=FLOWER_LOGIN, timeout=5).json()
            return all(any(i in str(t["args"]) for t in tasks.values()) for i in ids)

        wait_for(flower_sees_all, timeout_s=30, interval_s=0.2)
        queues = httpx.get(f"{flower_url}/api/queues/length", auth=FLOWER_LOGIN, timeout=10)
        assert queues.status_code == 200, queues.text
        assert httpx.get(f"{api.url}/readyz", timeout=5).status_code == 200

        watch = server.watch()
        denied = watch.acl_log()
        watch.close()
        if server.version() < (7, 0):
            # redis-py also sends CLIENT SETINFO, which it does without (and which Redis
            # before 7.2 does not know). Redis 6 files all of CLIENT under @dangerous, so
            # there it is refused; the SETNAME the fleet needs is granted, as /readyz shows.
            denied = [entry for entry in denied if entry["object"] != "client"]
        assert denied == [], denied


def run_aijobs(env: dict[str, str], *args: str) -> str:
    """Run an `aijobs` command to completion; its stdout, stripped."""
    done = subprocess.run(
        aijobs_argv(*args), env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()
