"""``aijobs dev``: the whole system on one machine, in the foreground.

Starts a private Redis (unless REDIS_URL is set), migrates the SQLite store,
and runs the simulator (unless OPENAI_API_KEY is set), the API, a worker and
Flower as child processes. Ctrl-C stops them all.

It loses nothing across a restart: the private Redis keeps an append-only file under
``.aijobs/redis``, the store is ``.aijobs/aijobs.db``, Flower's task history is
``.aijobs/flower.db``, and the dev API key, token secret and Flower password are made once
and kept in ``.aijobs/dev.env`` (mode 0600), so a client, a browser tab or a follower
survives ``aijobs dev`` being stopped and started.

With ``AIJOBS_LOG_JSON=true`` every line it writes is a JSON object: its own (the banner is
one record, without the key or password: those stay in ``.aijobs/dev.env``) and every
child's, in ``.aijobs/*.log`` (the children inherit the setting).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

from aijobs.devtools.redis_server import RedisServer, free_port, start_redis
from aijobs.logs import configure_logging_from_env
from aijobs.store.migrate import upgrade
from aijobs.webhooks.signing import new_secret as new_webhook_secret

STATE_DIR = Path(".aijobs")
log = logging.getLogger("aijobs.dev")


def _port_or_free(preferred: int) -> int:
    with socket.socket() as sock:
        # A port the last run just released (TIME_WAIT) is free to listen on again.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return free_port()


def _die_with_parent() -> None:
    # Linux: the child gets SIGTERM if `aijobs dev` itself dies (even by SIGKILL), so no
    # process outlives it. Elsewhere this is a no-op and Ctrl-C's cleanup is all there is.
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


#: How a child is started: this interpreter, never a module from the cwd (``-P``).
_CLI = [sys.executable, "-P", "-m", "aijobs.cli"]


def _spawn(
    args: list[str], env: dict[str, str], log_name: str | None = None
) -> subprocess.Popen[bytes]:
    out = None
    if log_name:
        out = open(STATE_DIR / log_name, "ab")  # noqa: SIM115 - lives as long as the child
    return subprocess.Popen(
        [*_CLI, *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT if out else None,
        start_new_session=True,  # its own process group: stopped as a whole
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )


def _dev_secrets() -> dict[str, str]:
    """The dev key, token secret, Flower password and webhook secret: made once, kept in
    .aijobs/dev.env."""
    path = STATE_DIR / "dev.env"
    saved: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            name, sep, value = line.partition("=")
            if sep and name.strip():
                saved[name.strip()] = value.strip()
    wanted = {
        "AIJOBS_API_KEYS": lambda: f"dev:dev-{secrets.token_urlsafe(18)}",
        "AIJOBS_TOKEN_SECRET": lambda: secrets.token_urlsafe(32),
        "AIJOBS_FLOWER_BASIC_AUTH": lambda: f"admin:{secrets.token_urlsafe(12)}",
        # Webhooks on: a job may carry webhook_url (to a local receiver, list its host in
        # AIJOBS_WEBHOOK_ALLOWED_HOSTS); verify them with this secret.
        "AIJOBS_WEBHOOK_SECRET": new_webhook_secret,
    }
    missing = {name: make() for name, make in wanted.items() if not saved.get(name)}
    if missing:
        saved |= missing
        text = "".join(f"{name}={value}\n" for name, value in saved.items())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write("# aijobs dev: made once, kept across restarts (delete to renew)\n")
            out.write(text)
    os.chmod(path, 0o600)
    return {name: saved[name] for name in wanted}


def _role(proc: subprocess.Popen[bytes]) -> str:
    """The word of a child's argv that messages name it by: the command after
    ``python -P -m aijobs.cli`` (``_spawn`` gives a list of str)."""
    return cast("list[str]", proc.args)[len(_CLI)]


def _wait_http(url: str, procs: list[subprocess.Popen[bytes]], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"a child process exited early ({_role(proc)}); see .aijobs/")
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


def run_dev(*, api_port: int, flower_port: int, simulator_port: int = 8300) -> int:
    """Run everything until Ctrl-C; returns the exit code."""
    json_lines = configure_logging_from_env()
    STATE_DIR.mkdir(exist_ok=True)
    os.chmod(STATE_DIR, 0o700)
    env = dict(os.environ)

    def say(message: str) -> None:
        # Its own notices: a record with JSON lines, the same words as before otherwise.
        if json_lines:
            log.info("%s", message.strip())
        else:
            print(message, file=sys.stderr)

    redis_server: RedisServer | None = None
    procs: list[subprocess.Popen[bytes]] = []
    previous: dict[signal.Signals, Any] = {}

    def on_signal(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    # Installed whatever this process inherited: started in the background of a script,
    # SIGINT arrives ignored (POSIX), and Ctrl-C must stop everything every time.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        previous[sig] = signal.signal(sig, on_signal)
    try:
        if not env.get("REDIS_URL"):
            redis_server = start_redis(STATE_DIR / "redis", append_only=True)
            env["REDIS_URL"] = redis_server.url
        database = (STATE_DIR / "aijobs.db").resolve()
        env.setdefault("DATABASE_URL", f"sqlite:///{database}")
        for name, value in _dev_secrets().items():
            if not env.get(name):
                env[name] = value
        upgrade(env["DATABASE_URL"])
        if database.exists():
            os.chmod(database, 0o600)

        if not env.get("OPENAI_API_KEY") and not env.get("OPENAI_BASE_URL"):
            sim_port = _port_or_free(simulator_port)
            procs.append(_spawn(["simulator", "--port", str(sim_port)], env, "simulator.log"))
            env["OPENAI_BASE_URL"] = f"http://127.0.0.1:{sim_port}/v1"
            _wait_http(f"http://127.0.0.1:{sim_port}/v1/models", procs)
        api_port = _port_or_free(api_port)
        flower_port = _port_or_free(flower_port)
        # The access log too: a developer sees each request (never its query string).
        procs.append(_spawn(["api", "--port", str(api_port), "--access-log"], env, "api.log"))
        procs.append(_spawn(["worker"], env, "worker.log"))
        flower_db = (STATE_DIR / "flower.db").resolve()
        flower = ["flower", "--port", str(flower_port), "--local-only", "--db", str(flower_db)]
        procs.append(_spawn(flower, env, "flower.log"))
        _wait_http(f"http://127.0.0.1:{api_port}/readyz", procs)
        if json_lines:
            _log_banner(env, api_port, flower_port)
        else:
            _print_banner(env, api_port, flower_port)
        while True:
            for proc in procs:
                if proc.poll() is not None:
                    say(f"aijobs dev: {_role(proc)} exited ({proc.returncode}); stopping")
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        say("\naijobs dev: stopping…")
        return 0
    finally:
        # A second Ctrl-C must not cut the cleanup short.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        _stop(procs)
        if redis_server is not None:
            redis_server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _without_password(url: str) -> str:
    """``url`` with the password of its user part (if any) taken out."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + host))


def _log_banner(env: dict[str, str], api_port: int, flower_port: int) -> None:
    """The banner as one record: where everything is, never a key or a password."""
    base = f"http://127.0.0.1:{api_port}"
    fields = {
        "api": base,
        "docs": f"{base}/docs",
        "console": f"{base}/console",
        "flower": f"http://127.0.0.1:{flower_port}",
        "flower_user": env["AIJOBS_FLOWER_BASIC_AUTH"].partition(":")[0],
        "redis": _without_password(env["REDIS_URL"]),
        "database": _without_password(env["DATABASE_URL"]),
        "provider": env.get("OPENAI_BASE_URL") or "https://api.openai.com/v1",
        # The API key and Flower's password are in this file (mode 0600), not in a log.
        "secrets": str(STATE_DIR / "dev.env"),
        "logs": str(STATE_DIR / "*.log"),
    }
    log.info("aijobs is running (Ctrl-C stops everything)", extra={"fields": fields})


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
  Console    {base}/console   (sign in with the dev key below)
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
