"""`aijobs dev` on a bare machine: brings everything up, runs a job, stops on Ctrl-C every
time (even started from a script, where SIGINT arrives ignored), leaves nothing behind,
and loses nothing across a restart (its Redis keeps an append-only file, its key and
passwords stay the same)."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from aijobs.devtools.redis_server import free_port
from tests.support import read_events


def _bare_env() -> dict[str, str]:
    drop = ("REDIS_URL", "DATABASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL")
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("AIJOBS_")}


def _ignore_sigint() -> None:
    # As a command started with `&` from a non-interactive shell gets it (POSIX).
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@dataclass
class Dev:
    proc: subprocess.Popen[str]
    banner: str
    children: list[psutil.Process]

    @property
    def key(self) -> str:
        return re.search(r"API key\s+(\S+)", self.banner).group(1)  # type: ignore[union-attr]

    @property
    def flower_password(self) -> str:
        return re.search(r"password (\S+)\)", self.banner).group(1)  # type: ignore[union-attr]


def start_dev(cwd: Path, api_port: int, flower_port: int) -> Dev:
    proc = subprocess.Popen(
        [sys.executable, "-P", "-m", "aijobs.cli", "dev", "--port", str(api_port),
         "--flower-port", str(flower_port), "--simulator-port", str(free_port())],
        cwd=cwd, env=_bare_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=_ignore_sigint,
    )  # fmt: skip
    banner: list[str] = []
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
    return Dev(proc, text, psutil.Process(proc.pid).children(recursive=True))


def stop_dev(dev: Dev) -> float:
    """Ctrl-C; how long it took to stop everything."""
    started = time.monotonic()
    dev.proc.send_signal(signal.SIGINT)
    try:
        dev.proc.wait(45)
    finally:
        if dev.proc.poll() is None:
            dev.proc.kill()
        if dev.proc.stdout is not None:
            dev.proc.stdout.close()
    took = time.monotonic() - started
    assert dev.proc.returncode == 0
    alive = [c for c in dev.children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], [c.cmdline() for c in alive]
    return took


def test_dev_runs_the_whole_system_stops_on_ctrl_c_and_loses_nothing_across_a_restart(
    tmp_path: Path,
) -> None:
    api_port, flower_port = free_port(), free_port()
    base = f"http://127.0.0.1:{api_port}"
    dev = start_dev(tmp_path, api_port, flower_port)
    try:
        assert f"{base}/console" in dev.banner
        assert re.search(r"JOB=\$\(curl .*/v1/jobs", dev.banner)
        assert len(dev.children) >= 5  # redis, simulator, api, worker, flower
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {dev.key}"}) as client:
            body = {"kind": "generate", "model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": "Tell me a story"}]}  # fmt: skip
            job = client.post("/v1/jobs", json=body).json()
            events = read_events(client, job["id"], timeout_s=60)
        assert [e.event for e in events][-2:] == ["result", "done"]
        flower = httpx.get(f"http://127.0.0.1:{flower_port}/api/workers")
        assert flower.status_code == 401  # Flower is behind a password
    finally:
        took = stop_dev(dev)
    assert took < 30, f"Ctrl-C took {took:.1f}s"

    state = tmp_path / ".aijobs"
    assert stat.S_IMODE((state / "dev.env").stat().st_mode) == 0o600
    assert stat.S_IMODE((state / "aijobs.db").stat().st_mode) == 0o600
    assert list((state / "redis").glob("appendonly*")), "the dev Redis keeps an append-only file"

    again = start_dev(tmp_path, api_port, flower_port)
    try:
        assert again.key == dev.key and again.flower_password == dev.flower_password
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {again.key}"}) as c:
            assert c.get(f"/v1/jobs/{job['id']}").json()["status"] == "succeeded"
            # The stream survived in Redis's append-only file, ids and all.
            assert read_events(c, job["id"]) == events
    finally:
        stop_dev(again)


def test_a_child_is_named_by_its_command() -> None:
    # Messages like "the worker exited" name a child by this word of its argv.
    from aijobs.devtools.devserver import _role, _spawn

    child = _spawn(["--version"], dict(os.environ))
    try:
        assert _role(child) == "--version"
    finally:
        child.wait(timeout=60)
