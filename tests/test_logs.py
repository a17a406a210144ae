"""One log format: with AIJOBS_LOG_JSON=true every line a whole `aijobs dev` run writes is
a JSON object — its own output and every child's log (the API with uvicorn's error and
access loggers, the worker with Celery's loggers and what Celery prints itself, Flower and
tornado, the simulator) — and none holds the prompt, the text or a key."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx

from aijobs.devtools.redis_server import free_port
from tests.support import read_events, wait_for

BANNER = "aijobs is running (Ctrl-C stops everything)"


def _bare_env(**extra: str) -> dict[str, str]:
    drop = ("REDIS_URL", "DATABASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("AIJOBS_")}
    return env | extra


def _records(lines: list[str], source: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Each non-empty line parsed; and the lines that are not a JSON object."""
    records, bad = [], []
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        else:
            bad.append(f"{source}: {line!r}")
    return records, bad


def _dev_secret(state: Path, name: str) -> str:
    for line in (state / "dev.env").read_text().splitlines():
        key, _, value = line.partition("=")
        if key == name:
            return value
    raise AssertionError(f"{name} not in dev.env")


def test_every_line_of_a_dev_run_is_json_and_holds_no_prompt_text_or_key(tmp_path: Path) -> None:
    canary = uuid.uuid4().hex
    prompt = f"PROMPT-CANARY-{canary} Tell me a story"
    api_port, flower_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-P", "-m", "aijobs.cli", "dev", "--port", str(api_port),
         "--flower-port", str(flower_port), "--simulator-port", str(free_port())],
        cwd=tmp_path, env=_bare_env(AIJOBS_LOG_JSON="true"), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    output: list[str] = []
    assert proc.stdout is not None
    stdout = proc.stdout

    def pump() -> None:
        for line in stdout:
            output.append(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    state = tmp_path / ".aijobs"
    try:

        def banner() -> dict[str, Any] | None:
            assert proc.poll() is None, "".join(output)
            records, _ = _records(list(output), "dev")
            return next((r for r in records if r.get("msg") == BANNER), None)

        running = wait_for(banner, timeout_s=120, interval_s=0.2)
        assert running["api"] == f"http://127.0.0.1:{api_port}"
        assert running["secrets"] == ".aijobs/dev.env"
        key = _dev_secret(state, "AIJOBS_API_KEYS").partition(":")[2]
        password = _dev_secret(state, "AIJOBS_FLOWER_BASIC_AUTH").partition(":")[2]
        flower = f"http://127.0.0.1:{flower_port}"
        flower_auth = ("admin", password)

        def flower_listens() -> bool:
            # Flower sees only the events sent while it listens: its event state knows the
            # worker (by its heartbeats) once it does.
            try:
                answer = httpx.get(f"{flower}/api/workers", params={"status": "true"},
                                   auth=flower_auth, timeout=5)  # fmt: skip
            except httpx.HTTPError:  # not serving yet
                return False
            return answer.status_code == 200 and any(answer.json().values())

        wait_for(flower_listens, timeout_s=60, interval_s=0.3)
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=running["api"], headers=headers, timeout=30) as client:
            body = {"kind": "generate", "model": "gpt-4o-mini", "max_tokens": 24,
                    "messages": [{"role": "user", "content": prompt}]}  # fmt: skip
            job_id = client.post("/v1/jobs", json=body).json()["id"]
            events = read_events(client, job_id, after=0, timeout_s=60)
            assert [e.event for e in events][-2:] == ["result", "done"]
            text = client.get(f"/v1/jobs/{job_id}").json()["result"]["text"]
        # Flower saw the task: its events reached it, and its pages were served.
        wait_for(
            lambda: job_id in httpx.get(f"{flower}/api/tasks", auth=flower_auth, timeout=5).text,
            timeout_s=30, interval_s=0.3,
        )  # fmt: skip
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
            reader.join(10)
            stdout.close()
    assert proc.returncode == 0, "".join(output[-20:])

    logs = {path.name: path.read_text().splitlines() for path in sorted(state.glob("*.log"))}
    assert set(logs) == {"api.log", "worker.log", "flower.log", "simulator.log"}
    records: dict[str, list[dict[str, Any]]] = {}
    bad: list[str] = []
    for source, lines in {"aijobs dev": output, **logs}.items():
        records[source], wrong = _records(lines, source)
        bad += wrong
    assert bad == [], "\n".join(bad[:20])

    def said(source: str, logger: str, words: str) -> bool:
        return any(
            r.get("logger", "").startswith(logger) and words in r.get("msg", "")
            for r in records[source]
        )

    # The paths that write lines of their own, each seen as JSON.
    assert said("aijobs dev", "aijobs.dev", "stopping")
    assert said("api.log", "uvicorn.error", "Uvicorn running on")
    assert said("api.log", "uvicorn.access", "POST /v1/jobs HTTP")
    assert said("api.log", "uvicorn.access", f"GET /v1/jobs/{job_id}/events HTTP")
    assert not any("?" in r["msg"] for r in records["api.log"] if r["logger"] == "uvicorn.access")
    assert said("worker.log", "aijobs.worker", "worker starting")
    assert said("worker.log", "celery", "ready.")
    assert said("worker.log", "celery.worker.strategy", "received")
    assert said("worker.log", "celery.app.trace", "succeeded in")
    assert said("worker.log", "aijobs.jobs", f"job {job_id} succeeded")
    assert said("worker.log", "celery.apps.worker", "Warm shutdown")
    assert said("flower.log", "flower", "Visit me at")
    assert said("simulator.log", "uvicorn.error", "Uvicorn running on")
    # Flower kept its history for the next run.
    assert list(state.glob("flower.db*"))

    everything = "".join(output) + "".join("\n".join(lines) for lines in logs.values())
    for secret in (canary, key, password, text):
        assert secret not in everything
