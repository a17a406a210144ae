"""`aijobs dev` on a bare machine: brings everything up, runs a job, and leaves nothing behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from aijobs.devtools.redis_server import free_port
from tests.support import read_events


def _bare_env() -> dict[str, str]:
    drop = ("REDIS_URL", "DATABASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL")
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("AIJOBS_")}


def test_dev_runs_the_whole_system_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    api_port, flower_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "aijobs.cli", "dev", "--port", str(api_port),
         "--flower-port", str(flower_port)],
        cwd=tmp_path, env=_bare_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    banner: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            banner.append(line)
            if line.startswith("  curl -N"):
                break
        text = "".join(banner)
        assert "aijobs is running" in text, text
        key = re.search(r"API key\s+(\S+)", text).group(1)  # type: ignore[union-attr]
        assert f"http://127.0.0.1:{api_port}" in text
        assert re.search(r"JOB=\$\(curl .*/v1/jobs", text)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 5  # redis, simulator, api, worker, flower

        base = f"http://127.0.0.1:{api_port}"
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as client:
            body = {"kind": "generate", "model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": "Tell me a story"}]}  # fmt: skip
            job = client.post("/v1/jobs", json=body).json()
            events = read_events(client, job["id"], timeout_s=60)
        assert [e.event for e in events][-2:] == ["result", "done"]
        assert "".join(e.data["text"] for e in events if e.event == "delta")
        flower = httpx.get(f"http://127.0.0.1:{flower_port}/api/workers")
        assert flower.status_code == 401  # Flower is behind a password
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
            if proc.stdout is not None:
                proc.stdout.close()
    assert proc.returncode == 0
    alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], [c.cmdline() for c in alive]
