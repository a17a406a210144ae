"""Redis the way production runs it, for the chaos run: a master and a replica, both with
an append-only file, watched by a Sentinel, and the three ways it fails here.

- ``restart(empty=False, down_s)``: the master is SIGKILLed and, ``down_s`` later,
  started again on its port from its AOF (``appendfsync everysec``: what Redis
  acknowledged was written to the file, so only the outage is felt), or with its files
  thrown away (a replaced machine: the
  replica resyncs from it and is emptied too).
- ``fail_over_to_lagging_replica(lag_s)``: the replica's replication link is cut (it
  replicates through a :class:`~tests.faultproxy.FaultProxy` that starts refusing), so
  for ``lag_s`` the master takes writes the replica never gets; then the master is
  SIGKILLed and the Sentinel promotes the replica. Those writes are gone, and nothing in
  the dataset says so (the epoch key survives): the partial loss the system must notice
  by itself. The old master comes back as a replica of the new one.

The Sentinel's ``down-after-milliseconds`` (5 s) is far above a restart's outage, so a
restart is never mistaken for a dead master; who is master is always asked of the
Sentinel, never assumed.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from aijobs.devtools.harness import Child, Harness, RedisServer, free_port, wait_for
from aijobs.devtools.redis_server import redis_server_binary, start_redis
from tests.faultproxy import FaultProxy

MASTER_NAME = "chaos"
DOWN_AFTER_MS = 5000


@dataclass
class Node:
    """One redis-server of the pair: its port and directory outlive its processes."""

    name: str
    port: int
    directory: Path
    server: RedisServer | None = None

    def client(self, *, timeout_s: float = 2.0) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=timeout_s,
                           socket_connect_timeout=timeout_s, decode_responses=True)  # fmt: skip

    def alive(self) -> bool:
        return self.server is not None and self.server.process.poll() is None


@dataclass
class FailoverReport:
    """What a failover to a lagging replica did."""

    old_master: int
    new_master: int
    #: Replication bytes the master had and the promoted replica never got.
    lag_bytes: int
    #: Seconds from the master's death to the Sentinel naming the new one.
    promotion_s: float


@dataclass
class RedisHA:
    """A master + replica + Sentinel on loopback, every process stopped by ``close``."""

    harness: Harness
    nodes: list[Node] = field(default_factory=list)
    sentinel_port: int = 0
    sentinel: Child | None = None

    @classmethod
    def start(cls, harness: Harness) -> RedisHA:
        ha = cls(harness)
        base = harness.workdir
        ha.nodes = [Node("redis-a", free_port(), base / "redis-a"),
                    Node("redis-b", free_port(), base / "redis-b")]  # fmt: skip
        first, second = ha.nodes
        ha._start_node(first, replica_of=None)
        ha._start_node(second, replica_of=first.port)
        ha._wait_in_sync(second)
        ha._start_sentinel(first.port)
        return ha

    @property
    def url(self) -> str:
        """The stack's ``REDIS_URL`` (with ``AIJOBS_REDIS_SENTINEL_MASTER`` = the name)."""
        return f"sentinel://127.0.0.1:{self.sentinel_port}/0"

    # -- who is who ---------------------------------------------------------------------

    def master_port(self) -> int:
        """The master as the Sentinel names it now."""
        with contextlib.closing(self._sentinel_client()) as client:
            _, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
        return int(port)

    def master(self) -> Node:
        port = self.master_port()
        return next(node for node in self.nodes if node.port == port)

    def replica(self) -> Node:
        port = self.master_port()
        return next(node for node in self.nodes if node.port != port)

    def direct_url(self) -> str:
        """A plain URL of the current master (for the test's own reads)."""
        return f"redis://127.0.0.1:{self.master_port()}/0"

    # -- faults -------------------------------------------------------------------------

    def kill(self, node: Node) -> None:
        """SIGKILL a node (mid-whatever) and reap it."""
        if node.server is not None and node.server.process.poll() is None:
            node.server.process.kill()
            node.server.process.wait()

    def restart(self, *, empty: bool, down_s: float = 0.0) -> int:
        """SIGKILL the master and, ``down_s`` later, start it again on its port, from its
        AOF or empty; returns its port."""
        node = self.master()
        self.kill(node)
        time.sleep(down_s)  # the outage itself (loading a real dataset takes seconds)
        if empty:
            shutil.rmtree(node.directory, ignore_errors=True)
        self._start_node(node, replica_of=None)
        return node.port

    def fail_over_to_lagging_replica(self, lag_s: float) -> FailoverReport:
        """Cut the replica off, let the master take writes for ``lag_s``, kill the master
        and wait for the Sentinel to promote the replica (see the module's docstring)."""
        master, replica = self.master(), self.replica()
        proxy = FaultProxy(master.port)
        try:
            with contextlib.closing(replica.client()) as client:
                client.replicaof("127.0.0.1", proxy.port)
            self._wait_in_sync(replica)
            proxy.refuse(True)
            time.sleep(lag_s)  # the fault itself: writes reach the master only
            lag_bytes = self._offset(master) - self._offset(replica)
            self.kill(master)
            died = time.monotonic()
            wait_for(lambda: self.master_port() == replica.port, timeout_s=60,
                     what="the Sentinel to promote the replica", interval_s=0.1)  # fmt: skip
            promotion_s = time.monotonic() - died
        finally:
            proxy.close()
        # The old machine comes back, as a replica of the new master.
        self._start_node(master, replica_of=replica.port)
        return FailoverReport(master.port, replica.port, lag_bytes, promotion_s)

    def wait_master_answers(self, timeout_s: float = 60.0) -> None:
        """Until the Sentinel's master answers a write."""

        def writable() -> bool:
            try:
                with contextlib.closing(self.master().client(timeout_s=1)) as client:
                    return bool(client.set("chaos:probe", "1"))
            except (redis.RedisError, OSError, StopIteration):
                return False

        wait_for(writable, timeout_s=timeout_s, what="the Redis master to take writes",
                 interval_s=0.1)  # fmt: skip

    def close(self) -> None:
        """Stop the Sentinel (a harness child) and both nodes."""
        if self.sentinel is not None:
            self.sentinel.kill()
        for node in self.nodes:
            if node.server is not None:
                node.server.stop()

    # -- internals ----------------------------------------------------------------------

    def _start_node(self, node: Node, *, replica_of: int | None) -> None:
        extra: tuple[str, ...] = ()
        if replica_of is not None:
            extra = ("--replicaof", "127.0.0.1", str(replica_of))
        node.server = start_redis(node.directory, port=node.port, append_only=True,
                                  extra_args=extra)  # fmt: skip
        self.harness.redis_servers.append(node.server)  # stopped by the harness too

    def _wait_in_sync(self, replica: Node) -> None:
        def synced() -> bool:
            try:
                with contextlib.closing(replica.client()) as client:
                    info = client.info("replication")
            except (redis.RedisError, OSError):
                return False
            return info.get("master_link_status") == "up" and not info.get(
                "master_sync_in_progress"
            )

        wait_for(synced, timeout_s=60, what=f"{replica.name} to sync", interval_s=0.1)

    def _offset(self, node: Node) -> int:
        with contextlib.closing(node.client()) as client:
            info = client.info("replication")
        key = "master_repl_offset" if info.get("role") == "master" else "slave_repl_offset"
        return int(info.get(key, 0))

    def _sentinel_client(self) -> redis.Redis:
        return redis.Redis(port=self.sentinel_port, socket_timeout=2, decode_responses=True)

    def _start_sentinel(self, master_port: int) -> None:
        directory = self.harness.workdir / "sentinel"
        directory.mkdir(parents=True, exist_ok=True)
        self.sentinel_port = free_port()
        config = directory / "sentinel.conf"
        # failover-timeout is long on purpose: it is also how soon a Sentinel "fixes" a
        # replica that replicates from an address other than the master's (the proxy of a
        # planned lag), which would end the lag before the master is killed.
        config.write_text(
            f"port {self.sentinel_port}\n"
            "bind 127.0.0.1\n"
            f"dir {directory}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 1\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER_NAME} 600000\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
        )
        self.sentinel = self.harness.spawn(
            "sentinel", [redis_server_binary(), str(config), "--sentinel"], env={}
        )

        def knows_both() -> bool:
            try:
                with contextlib.closing(self._sentinel_client()) as client:
                    replicas = client.execute_command("SENTINEL", "REPLICAS", MASTER_NAME)
            except (redis.RedisError, OSError):
                return False
            return len(replicas) == 1

        wait_for(knows_both, timeout_s=60, what="the Sentinel to see master and replica",
                 interval_s=0.2, watch=[self.sentinel])  # fmt: skip
