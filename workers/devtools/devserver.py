"""``aijobs dev``: the whole system on one machine, in the foreground.

Starts a private Redis (unless REDIS_URL is set), migrates the SQLite store,
and runs the simulator (unless OPENAI_API_KEY is set), the API, a worker and
Flower as child processes. Ctrl-C stops them all.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from aijobs.devtools.redis_server import RedisServer, free_port, start_redis
from aijobs.store.migrate import upgrade

STATE_DIR = Path(".aijobs")


def _port_or_free(preferred: int) -> int:
    with socket.socket() as sock:
        # A port the last run just released (TIME_WAIT) is free to listen on again.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return free_port()


def _spawn(
    args: list[str], env: dict[str, str], log_name: str | None = None
) -> subprocess.Popen[bytes]:
    out = None
    if log_name:
        out = open(STATE_DIR / log_name, "ab")  # noqa: SIM115 - lives as long as the child
    return subprocess.Popen(
        [sys.executable, "-P", "-m", "aijobs.cli", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT if out else None,
        start_new_session=True,  # its own process group: stopped as a whole
    )


def _wait_http(url: str, procs: list[subprocess.Popen[bytes]], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"a child process exited early ({proc.args[3]}); see .aijobs/")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as answer:
            if answer.status < 500:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {timeout_s:.0f}s")


def _stop(procs: list[subprocess.Popen[bytes]], timeout_s: float = 15.0) -> None:
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run_dev(*, api_port: int, flower_port: int) -> int:
    """Run everything until Ctrl-C; returns the exit code."""
    STATE_DIR.mkdir(exist_ok=True)
    env = dict(os.environ)
    redis_server: RedisServer | None = None
    procs: list[subprocess.Popen[bytes]] = []
    stopping = False

    def on_term(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        if not env.get("REDIS_URL"):
            redis_server = start_redis(STATE_DIR / "redis")
            env["REDIS_URL"] = redis_server.url
        env.setdefault("DATABASE_URL", f"sqlite:///{(STATE_DIR / 'aijobs.db').resolve()}")
        if not env.get("AIJOBS_API_KEYS"):
            env["AIJOBS_API_KEYS"] = f"dev:dev-{secrets.token_urlsafe(18)}"
        if not env.get("AIJOBS_TOKEN_SECRET"):
            env["AIJOBS_TOKEN_SECRET"] = secrets.token_urlsafe(32)
        if not env.get("AIJOBS_FLOWER_BASIC_AUTH"):
            env["AIJOBS_FLOWER_BASIC_AUTH"] = f"admin:{secrets.token_urlsafe(12)}"
        upgrade(env["DATABASE_URL"])

        if not env.get("OPENAI_API_KEY") and not env.get("OPENAI_BASE_URL"):
            sim_port = _port_or_free(8300)
            procs.append(_spawn(["simulator", "--port", str(sim_port)], env, "simulator.log"))
            env["OPENAI_BASE_URL"] = f"http://127.0.0.1:{sim_port}/v1"
            _wait_http(f"http://127.0.0.1:{sim_port}/v1/models", procs)
        api_port = _port_or_free(api_port)
        flower_port = _port_or_free(flower_port)
        procs.append(_spawn(["api", "--port", str(api_port)], env, "api.log"))
        procs.append(_spawn(["worker"], env, "worker.log"))
        procs.append(
            _spawn(["flower", "--port", str(flower_port), "--local-only"], env, "flower.log")
        )
        _wait_http(f"http://127.0.0.1:{api_port}/readyz", procs)
        _print_banner(env, api_port, flower_port)
        while True:
            for proc in procs:
                if proc.poll() is not None:
                    print(
                        f"aijobs dev: {proc.args[3]} exited ({proc.returncode}); stopping",
                        file=sys.stderr,
                    )
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\naijobs dev: stopping…", file=sys.stderr)
        return 0
    finally:
        _stop(procs)
        if redis_server is not None:
            redis_server.stop()
        if stopping:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _print_banner(env: dict[str, str], api_port: int, flower_port: int) -> None:
    key = env["AIJOBS_API_KEYS"].split(",")[0].partition(":")[2]
    user, _, password = env["AIJOBS_FLOWER_BASIC_AUTH"].partition(":")
    base = f"http://127.0.0.1:{api_port}"
    provider = env.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
    body = (
        '{"kind":"generate","model":"gpt-4o-mini",'
        '"messages":[{"role":"user","content":"Tell me a story"}]}'
    )
    auth = f"-H 'Authorization: Bearer {key}'"
    take_id = "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"id\"])'"
    print(
        f"""
aijobs is running (Ctrl-C stops everything)
  API        {base}   (docs: {base}/docs)
  Flower     http://127.0.0.1:{flower_port}   (user {user}, password {password})
  Redis      {env["REDIS_URL"]}
  Database   {env["DATABASE_URL"]}
  Provider   {provider}
  API key    {key}
  Logs       .aijobs/*.log

Submit a job (its id goes in $JOB):
  JOB=$(curl -s {base}/v1/jobs {auth} -H 'Content-Type: application/json' -d '{body}' | {take_id})
Follow its events:
  curl -N {base}/v1/jobs/$JOB/events {auth}
""",
        flush=True,
    )
