"""Reader fan-out benchmark: many SSE readers on one API process vs one XREAD connection each.

    python ops/bench/readers.py [--readers 1000] [--jobs 50] [--rate 20] [--seconds 10]
                                [--flush-ms 5] [--clients 1] [--json PATH]

Starts a private Redis, a fresh SQLite job store with ``2 x --jobs`` queued jobs of one
tenant (rows only, no Celery worker) and ``aijobs api``, then runs two phases, one after
the other, each on its own ``--jobs`` jobs:

* ours: ``--readers`` SSE connections (``GET /v1/jobs/{id}/events``) to the one API
  process, spread evenly over the jobs; the API holds one pub/sub connection for all of
  them and reads backlogs from its Redis pool;
* baseline: the same readers, each holding its own Redis connection blocked in
  ``XREAD BLOCK 0`` on its job's Stream (what a naive API would hold per client).

A writer process plays the worker with the project's ``EventWriter`` (coalescing window
``--flush-ms``): it begins attempt 1 of every job (a ``status`` event), then, once every
reader has that event, writes ``--rate`` deltas per second per job for ``--seconds``
(evenly staggered over the jobs), each delta's text being ``<seq>@<time.time()>;``, and
closes every job with ``result`` + ``done``. Deltas buffered in one flush window are
merged into one event, so a received event may carry several ``seq@time`` pieces.

Readers run in ``--clients`` load-generator processes (asyncio, uvloop when present; raw
HTTP/1.1 over asyncio protocols for SSE, ``redis.asyncio`` for XREAD). Latency is the
reader's receive time minus the piece's write time (so it includes the coalescing
window). Every reader is checked: event ids 1..last with no gap or duplicate, every delta
piece in order, ``result`` then ``done`` last, and the same last id as the writer wrote.
CPU is psutil user+sys over the delivery window (from the writer's first delta to the
last reader's ``done``); Redis connections are sampled with CLIENT LIST (by client name)
and from the API's own sockets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import queue
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))

from streaming import BenchError  # noqa: E402  (ops/bench is not a package)
from streaming import Child as ProcessChild  # noqa: E402

TENANT = "bench"
API_KEY = "bench-key"
MODEL = "gpt-4o-mini"
API_CLIENT_NAME = "aijobs-api"
XREAD_CLIENT_NAME = "bench-xread"
CONTROL_CLIENT_NAME = "bench-control"
CONNECT_PARALLEL = 100
MAX_ERRORS_PER_READER = 3


def raise_nofile(want: int = 65536) -> int:
    """Raise this process's open-file limit (children inherit it); returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999999) - 1))]


# == the writer (plays the worker) ============================================================


def writer_main(args: argparse.Namespace) -> int:
    import redis

    from aijobs.events.writer import EventWriter

    jobs: list[str] = json.loads(Path(args.jobs_file).read_text())
    client = redis.Redis.from_url(args.redis_url)
    writer = EventWriter(
        client, retention_s=3600, maxlen=100_000, flush_interval_s=args.flush_ms / 1000
    )
    for job_id in jobs:
        writer.begin(job_id, 1, [("status", {"status": "running", "attempt": 1})])
    print("READY", flush=True)
    if sys.stdin.readline().strip() != "GO":
        return 1  # the orchestrator went away
    writer.start()
    n = len(jobs)
    per_job = max(1, round(args.rate * args.seconds))
    step = 1.0 / (args.rate * n)
    t0 = time.time()
    max_lag = 0.0
    for i in range(per_job * n):
        due = t0 + i * step
        now = time.time()
        if due > now:
            time.sleep(due - now)
        else:
            max_lag = max(max_lag, now - due)
        writer.delta(jobs[i % n], 1, f"{i // n}@{time.time():.6f};")
    last_ids = {}
    for job_id in jobs:
        last_ids[job_id] = writer.finish(
            job_id, 1, [("result", {"pieces": per_job}), ("done", {"status": "succeeded"})]
        )
    writer.stop()
    client.close()
    out = {
        "pieces_per_job": per_job,
        "last_ids": last_ids,
        "started_at": t0,
        "finished_at": time.time(),
        "max_lag_s": max_lag,
    }
    Path(args.out).write_text(json.dumps(out))
    print("DONE", flush=True)
    return 0


# == the readers (load generator) ==============================================================


class Track:
    """One reader's view of its job's events, checked as they arrive."""

    __slots__ = (
        "done_at",
        "errors",
        "events",
        "finished",
        "job",
        "latencies",
        "next_id",
        "next_piece",
        "on_ready",
        "pieces",
        "ready",
        "saw_result",
    )

    def __init__(self, job: int, latencies: array, on_ready: Any) -> None:
        self.job = job
        self.latencies = latencies
        self.on_ready = on_ready
        self.next_id = 1
        self.next_piece = 0
        self.events = 0  # after the opening status event
        self.pieces = 0
        self.errors: list[str] = []
        self.finished = False
        self.saw_result = False
        self.ready = False
        self.done_at = 0.0

    def error(self, text: str) -> None:
        if len(self.errors) < MAX_ERRORS_PER_READER:
            self.errors.append(text)
        self.mark_ready()

    def mark_ready(self) -> None:
        if not self.ready:
            self.ready = True
            self.on_ready()

    def on_event(self, event_id: int, event: str, data: bytes | str, now: float) -> None:
        if self.finished:
            self.error(f"event {event_id} ({event}) after done")
            return
        if event_id != self.next_id:
            self.error(f"expected event {self.next_id}, got {event_id} ({event})")
        self.next_id = event_id + 1
        if event_id == 1:
            self.mark_ready()
        else:
            self.events += 1
        if event == "delta":
            text: str = json.loads(data)["text"]
            for piece in text.split(";"):
                if not piece:
                    continue
                seq_text, _, sent = piece.partition("@")
                seq = int(seq_text)
                if seq != self.next_piece:
                    self.error(f"expected delta piece {self.next_piece}, got {seq}")
                self.next_piece = seq + 1
                self.pieces += 1
                self.latencies.append(now - float(sent))
        elif event == "result":
            self.saw_result = True
        elif event == "done":
            if not self.saw_result:
                self.error("done without result")
            self.finished = True
            self.done_at = now

    def summary(self) -> dict[str, Any]:
        errors = list(self.errors)
        if not self.finished and not errors:
            errors.append("no done event")
        return {
            "job": self.job,
            "events": self.events,
            "pieces": self.pieces,
            "last_id": self.next_id - 1,
            "finished": self.finished,
            "done_at": self.done_at,
            "errors": errors,
        }


class SseReader(asyncio.Protocol):
    """A raw HTTP/1.1 SSE client: chunked transfer decoding, then SSE frames."""

    def __init__(self, track: Track, request: bytes, closed: asyncio.Future[None]) -> None:
        self.track = track
        self.request = request
        self.closed = closed
        self.transport: Any = None  # uvloop's transports are not asyncio.Transport
        self.raw = bytearray()
        self.body = bytearray()
        self.headers_done = False
        self.chunk_left = -1  # -1: a size line is next; 0: the chunk's CRLF is next

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        raw = self.raw
        raw += data
        if not self.headers_done:
            end = raw.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(raw[:end]).decode("latin-1")
            del raw[: end + 4]
            status = head.split("\r\n", 1)[0]
            if " 200 " not in status + " ":
                self.fail(f"HTTP status: {status!r} {bytes(raw[:200])!r}")
                return
            if "transfer-encoding: chunked" not in head.lower():
                self.fail("the event stream is not chunked")
                return
            self.headers_done = True
        body = self.body
        while raw:
            if self.chunk_left < 0:
                eol = raw.find(b"\r\n")
                if eol < 0:
                    break
                size = int(bytes(raw[:eol]).split(b";", 1)[0], 16)
                del raw[: eol + 2]
                if size == 0:
                    raw.clear()
                    break
                self.chunk_left = size
            elif self.chunk_left > 0:
                take = min(len(raw), self.chunk_left)
                body += raw[:take]
                del raw[:take]
                self.chunk_left -= take
            else:
                if len(raw) < 2:
                    break
                del raw[:2]
                self.chunk_left = -1
        while True:
            end = body.find(b"\n\n")
            if end < 0:
                break
            frame = bytes(body[:end])
            del body[: end + 2]
            self.on_frame(frame, now)
            if self.track.finished:
                if self.transport is not None:
                    self.transport.close()
                return

    def on_frame(self, frame: bytes, now: float) -> None:
        event_id = None
        event = ""
        data = b""
        for line in frame.split(b"\n"):
            if line.startswith(b"id: "):
                event_id = int(line[4:])
            elif line.startswith(b"event: "):
                event = line[7:].decode()
            elif line.startswith(b"data: "):
                data = line[6:]
        if event_id is not None:  # else retry: or a keep-alive comment
            self.track.on_event(event_id, event, data, now)

    def fail(self, text: str) -> None:
        self.track.error(text)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.track.finished:
            self.track.error(f"connection closed before done ({exc!r})")
        if not self.closed.done():
            self.closed.set_result(None)


async def run_sse_reader(
    track: Track, host: str, port: int, job_id: str, gate: asyncio.Semaphore
) -> None:
    loop = asyncio.get_running_loop()
    request = (
        f"GET /v1/jobs/{job_id}/events HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {API_KEY}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()
    closed: asyncio.Future[None] = loop.create_future()
    try:
        async with gate:
            transport, _ = await loop.create_connection(
                lambda: SseReader(track, request, closed), host, port
            )
    except OSError as exc:
        track.error(f"connect failed: {exc!r}")
        return
    try:
        await closed
    finally:
        transport.close()


def resp_command(*args: str | bytes) -> bytes:
    """One Redis command in RESP."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


_INCOMPLETE = object()


def resp_parse(buf: bytes, pos: int) -> tuple[Any, int]:
    """One RESP2 reply at ``pos``: (value, next position), or (_INCOMPLETE, pos)."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return _INCOMPLETE, pos
    kind, line, after = buf[pos], buf[pos + 1 : end], end + 2
    if kind in b"+-":
        return (line if kind == ord("+") else RuntimeError(line.decode())), after
    if kind == ord(":"):
        return int(line), after
    size = int(line)
    if size < 0:
        return None, after
    if kind == ord("$"):
        if len(buf) < after + size + 2:
            return _INCOMPLETE, pos
        return buf[after : after + size], after + size + 2
    items = []
    for _ in range(size):
        item, after = resp_parse(buf, after)
        if item is _INCOMPLETE:
            return _INCOMPLETE, pos
        items.append(item)
    return items, after


class XreadReader(asyncio.Protocol):
    """A raw RESP2 client on its own connection: XREAD BLOCK 0 on one Stream, in a loop."""

    def __init__(self, track: Track, key: str, closed: asyncio.Future[None]) -> None:
        self.track = track
        self.key = key
        self.closed = closed
        self.transport: Any = None
        self.buf = b""
        self.named = False
        self.last = b"0-0"

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(resp_command("CLIENT", "SETNAME", XREAD_CLIENT_NAME) + self.xread())

    def xread(self) -> bytes:
        return resp_command("XREAD", "BLOCK", "0", "STREAMS", self.key, self.last)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buf = self.buf + data
        pos = 0
        while pos < len(buf):
            reply, pos = resp_parse(buf, pos)
            if reply is _INCOMPLETE:
                break
            if isinstance(reply, Exception):
                self.track.error(f"redis error: {reply}")
                self.transport.close()
                return
            if not self.named:
                self.named = True
                continue
            for _key, entries in reply or ():
                for entry_id, fields in entries:
                    self.last = entry_id
                    pairs = dict(zip(fields[::2], fields[1::2], strict=True))
                    self.track.on_event(
                        int(entry_id.rpartition(b"-")[2]), pairs[b"e"].decode(), pairs[b"d"], now
                    )
            if self.track.finished:
                self.transport.close()
                return
            self.transport.write(self.xread())
        self.buf = buf[pos:]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.track.finished:
            self.track.error(f"connection closed before done ({exc!r})")
        if not self.closed.done():
            self.closed.set_result(None)


async def run_xread_reader(
    track: Track, host: str, port: int, job_id: str, gate: asyncio.Semaphore
) -> None:
    from aijobs import redis_keys as keys

    loop = asyncio.get_running_loop()
    closed: asyncio.Future[None] = loop.create_future()
    key = keys.events_key(job_id)
    try:
        async with gate:
            transport, _ = await loop.create_connection(
                lambda: XreadReader(track, key, closed), host, port
            )
    except OSError as exc:
        track.error(f"connect failed: {exc!r}")
        return
    try:
        await closed
    finally:
        transport.close()


async def loadgen(args: argparse.Namespace) -> int:
    jobs: list[str] = json.loads(Path(args.jobs_file).read_text())
    mine = [i for i in range(args.readers) if i % args.clients == args.client_index]
    latencies = array("d")
    all_ready = asyncio.Event()
    ready_count = 0

    def on_ready() -> None:
        nonlocal ready_count
        ready_count += 1
        if ready_count == len(mine):
            all_ready.set()

    tracks = [Track(i % len(jobs), latencies, on_ready) for i in mine]
    gate = asyncio.Semaphore(CONNECT_PARALLEL)
    host, _, port = args.api.rpartition(":")
    redis_host, _, redis_port = (
        args.redis_url.removeprefix("redis://").partition("/")[0].rpartition(":")
    )
    tasks = []
    for track in tracks:
        job_id = jobs[track.job]
        if args.role == "sse":
            coro = run_sse_reader(track, host, int(port), job_id, gate)
        else:
            coro = run_xread_reader(track, redis_host, int(redis_port), job_id, gate)
        tasks.append(asyncio.create_task(coro))
    if not mine:
        all_ready.set()
    deadline = time.monotonic() + args.timeout
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_ready.wait(), args.timeout)
    print(f"READY {sum(1 for t in tracks if not t.errors)}", flush=True)
    if tasks:
        _done, pending = await asyncio.wait(tasks, timeout=max(1.0, deadline - time.monotonic()))
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    with open(args.out + ".lat", "wb") as fh:
        latencies.tofile(fh)
    out = {"readers": [t.summary() for t in tracks], "latency_file": args.out + ".lat"}
    Path(args.out).write_text(json.dumps(out))
    print("DONE", flush=True)
    return 0


def loadgen_main(args: argparse.Namespace) -> int:
    raise_nofile()
    try:
        import uvloop
    except ImportError:
        return asyncio.run(loadgen(args))
    return uvloop.run(loadgen(args))


# == the orchestrator ===========================================================================


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """Our environment without proxies (all traffic is to 127.0.0.1), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


@dataclass
class Child(ProcessChild):
    """A process we started, plus the lines it printed and its stdin."""

    lines: queue.Queue[str] = field(default_factory=queue.Queue)

    def pump(self) -> None:
        """Read the child's stdout lines into ``lines`` (a daemon thread)."""
        stdout = self.process.stdout
        if stdout is None:
            return

        def run() -> None:
            for raw in stdout:
                self.lines.put(raw.decode(errors="replace").strip())

        threading.Thread(target=run, name=f"pump-{self.name}", daemon=True).start()

    def expect(self, word: str, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if not self.alive() and self.lines.empty():
                    code = self.process.returncode
                    raise BenchError(
                        f"{self.name} exited ({code}) before {word}:\n{self.log_tail()}"
                    ) from None
                if time.monotonic() > deadline:
                    what = f"{word} from {self.name}"
                    raise BenchError(
                        f"timed out after {timeout_s:.0f}s waiting for {what}"
                    ) from None
                continue
            if line.split(" ", 1)[0] == word:
                return line

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Close its stdin, then SIGTERM and SIGKILL (see ``streaming.Child``)."""
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        super().stop(timeout_s)
        if self.process.stdout is not None:
            with contextlib.suppress(OSError):
                self.process.stdout.close()


def spawn(name: str, argv: list[str], env: dict[str, str], log_dir: Path, *, pipes: bool) -> Child:
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv,
            env=env,
            cwd=str(ROOT),
            stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipes else log,
            stderr=log,
            start_new_session=True,  # Ctrl-C reaches only us; we stop children by PID
        )
    child = Child(name, process, log_path)
    if pipes:
        child.pump()
    return child


def role_argv(role: str, **options: Any) -> list[str]:
    """This script in ``role`` with ``--name value`` options (underscores become dashes)."""
    pairs = [x for k, v in options.items() for x in (f"--{k.replace('_', '-')}", str(v))]
    return [sys.executable, str(Path(__file__).resolve()), "--role", role, *pairs]


def cpu_s(pid: int, *, system_only: bool = False) -> float:
    """User+sys (or only sys) CPU seconds of a process."""
    import psutil

    with contextlib.suppress(psutil.Error):
        t = psutil.Process(pid).cpu_times()
        return t.system if system_only else t.user + t.system
    return 0.0


def aijobs_command() -> list[str]:
    script = Path(sys.executable).with_name("aijobs")
    return [str(script)] if script.exists() else [sys.executable, "-m", "aijobs.cli"]


class Sampler(threading.Thread):
    """Every ``interval_s``: Redis clients by name, the API's sockets to Redis, the API's RSS."""

    def __init__(self, redis_url: str, redis_port: int, api_pid: int, interval_s: float) -> None:
        import psutil
        import redis

        super().__init__(name="sampler", daemon=True)
        self.client = redis.Redis.from_url(redis_url, client_name=CONTROL_CLIENT_NAME)
        self.redis_port = redis_port
        self.api = psutil.Process(api_pid)
        self.interval_s = interval_s
        self.samples: list[dict[str, float]] = []
        self.api_last_commands: dict[str, int] = {}
        self.stopping = threading.Event()

    def sample(self) -> None:
        import psutil
        import redis

        row: dict[str, float] = {"t": time.time()}
        with contextlib.suppress(redis.RedisError):
            clients = self.client.client_list()
            names = [c.get("name", "") for c in clients]
            row["api_named"] = sum(1 for n in names if n == API_CLIENT_NAME)
            if row["api_named"] >= max(self.peak("api_named") or 0, 1):
                # What the API's connections last ran (subscribe = the live hub).
                self.api_last_commands = dict(
                    Counter(c.get("cmd", "?") for c in clients if c.get("name") == API_CLIENT_NAME)
                )
            row["xread_named"] = sum(1 for n in names if n == XREAD_CLIENT_NAME)
            row["clients"] = sum(1 for n in names if n != CONTROL_CLIENT_NAME)
        with contextlib.suppress(psutil.Error):
            row["api_rss"] = self.api.memory_info().rss
            row["api_sockets"] = sum(
                1
                for c in self.api.net_connections(kind="tcp")
                if c.raddr and c.raddr.port == self.redis_port and c.status == "ESTABLISHED"
            )
        self.samples.append(row)

    def run(self) -> None:
        self.sample()
        while not self.stopping.wait(self.interval_s):
            self.sample()

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)
        self.sample()
        self.client.close()

    def peak(self, name: str, since: float = 0.0) -> float | None:
        values = [s[name] for s in self.samples if name in s and s["t"] >= since]
        return max(values) if values else None


@dataclass
class Context:
    args: argparse.Namespace
    tmp: Path
    redis_url: str
    redis_port: int
    redis_pid: int
    api: Child
    api_addr: str
    children: list[Child] = field(default_factory=list)

    def track(self, child: Child) -> Child:
        self.children.append(child)
        return child


def run_phase(ctx: Context, name: str, mode: str, job_ids: list[str]) -> dict[str, Any]:
    args = ctx.args
    jobs_file = ctx.tmp / f"{name}-jobs.json"
    jobs_file.write_text(json.dumps(job_ids))
    env = child_env({"AIJOBS_LOG_LEVEL": "WARNING"})
    writer_out = ctx.tmp / f"{name}-writer.json"
    sampler = Sampler(ctx.redis_url, ctx.redis_port, ctx.api.pid, 0.5)
    sampler.start()
    try:
        writer_argv = role_argv(
            "writer",
            redis_url=ctx.redis_url,
            jobs_file=jobs_file,
            rate=args.rate,
            seconds=args.seconds,
            flush_ms=args.flush_ms,
            out=writer_out,
        )
        writer = ctx.track(spawn(f"{name}-writer", writer_argv, env, ctx.tmp, pipes=True))
        writer.expect("READY", 60)
        connect_t0 = time.time()
        api_cpu_connect0 = cpu_s(ctx.api.pid)
        timeout = args.seconds + 120
        loadgens: list[Child] = []
        for c in range(args.clients):
            argv = role_argv(
                mode,
                api=ctx.api_addr,
                redis_url=ctx.redis_url,
                jobs_file=jobs_file,
                readers=args.readers,
                clients=args.clients,
                client_index=c,
                timeout=timeout,
                out=ctx.tmp / f"{name}-readers-{c}.json",
            )
            loadgens.append(ctx.track(spawn(f"{name}-readers-{c}", argv, env, ctx.tmp, pipes=True)))
        ready = sum(int(lg.expect("READY", timeout).split()[1]) for lg in loadgens)
        connect_s = time.time() - connect_t0
        api_cpu_connect = cpu_s(ctx.api.pid) - api_cpu_connect0
        pids = {"api": ctx.api.pid, "redis": ctx.redis_pid, "writer": writer.pid}
        pids.update({lg.name: lg.pid for lg in loadgens})
        before = {k: cpu_s(p) for k, p in pids.items()}
        api_sys0 = cpu_s(ctx.api.pid, system_only=True)
        t_go = time.time()
        writer.send("GO")
        writer.expect("DONE", timeout)
        for lg in loadgens:
            lg.expect("DONE", timeout)
        after = {k: cpu_s(p) for k, p in pids.items()}
        after["api_sys"] = cpu_s(ctx.api.pid, system_only=True) - api_sys0
    finally:
        sampler.stop()
    for child in [writer, *loadgens]:
        child.stop()
    written = json.loads(writer_out.read_text())
    readers: list[dict[str, Any]] = []
    latencies = array("d")
    for c in range(args.clients):
        got = json.loads((ctx.tmp / f"{name}-readers-{c}.json").read_text())
        readers += got["readers"]
        with open(got["latency_file"], "rb") as fh:
            latencies.frombytes(fh.read())
    measured = {
        "before": before,
        "after": after,
        "t_go": t_go,
        "connect_s": connect_s,
        "api_cpu_connect_s": api_cpu_connect,
        "ready": ready,
    }
    return phase_figures(name, mode, job_ids, written, readers, latencies, measured, sampler)


def phase_figures(
    name: str,
    mode: str,
    job_ids: list[str],
    written: dict[str, Any],
    readers: list[dict[str, Any]],
    latencies: array,
    measured: dict[str, Any],
    sampler: Sampler,
) -> dict[str, Any]:
    before, after, t_go = measured["before"], measured["after"], measured["t_go"]
    per_job = written["pieces_per_job"]
    problems: list[str] = []
    verified = 0
    for r in readers:
        job_id = job_ids[r["job"]]
        errs = list(r["errors"])
        if r["pieces"] != per_job:
            errs.append(f"{r['pieces']} delta pieces, expected {per_job}")
        if r["last_id"] != written["last_ids"][job_id]:
            errs.append(f"last id {r['last_id']}, the writer's is {written['last_ids'][job_id]}")
        if errs:
            problems.append(f"reader of job {r['job']}: " + "; ".join(errs))
        else:
            verified += 1
    ordered = sorted(latencies)
    done_at = [r["done_at"] for r in readers if r["done_at"]]
    window = (max(done_at) - t_go) if done_at else float("nan")
    events = sum(r["events"] for r in readers)
    pieces = sum(r["pieces"] for r in readers)

    def used(key: str) -> float:
        return after[key] - before[key]

    reader_cpu = sum(used(k) for k in before if "-readers-" in k)
    return {
        "name": name,
        "mode": mode,
        "readers": len(readers),
        "jobs": len(job_ids),
        "ready_before_go": measured["ready"],
        "connect_s": measured["connect_s"],
        "api_cpu_connect_s": measured["api_cpu_connect_s"],
        "events_written": sum(written["last_ids"].values()) - len(job_ids),
        "pieces_written": per_job * len(job_ids),
        "events": events,
        "pieces": pieces,
        "window_s": window,
        "events_per_s": events / window if window > 0 else float("nan"),
        "pieces_per_s": pieces / window if window > 0 else float("nan"),
        "latency_ms": {
            "p50": percentile(ordered, 0.50) * 1e3,
            "p90": percentile(ordered, 0.90) * 1e3,
            "p99": percentile(ordered, 0.99) * 1e3,
            "max": (ordered[-1] * 1e3) if ordered else float("nan"),
            "samples": len(ordered),
        },
        "writer_max_lag_ms": written["max_lag_s"] * 1e3,
        "cpu_s": {
            "api": used("api"),
            "api_sys": after["api_sys"],
            "redis": used("redis"),
            "writer": used("writer"),
            "readers": reader_cpu,
        },
        "api_cpu_per_event_us": used("api") / events * 1e6 if events else float("nan"),
        "api_rss_mb_max": (sampler.peak("api_rss") or 0) / 2**20,
        "redis_conns": {
            "api_named_max": sampler.peak("api_named"),
            "api_named_delivery_max": sampler.peak("api_named", t_go),
            "api_sockets_max": sampler.peak("api_sockets"),
            "xread_named_max": sampler.peak("xread_named"),
            "all_clients_max": sampler.peak("clients"),
            "api_last_commands_at_peak": sampler.api_last_commands,
        },
        "verified_readers": verified,
        "problems": problems,
    }


def fmt(value: float | None, spec: str = ".0f") -> str:
    return "-" if value is None else format(value, spec)


def print_table(args: argparse.Namespace, ours: dict[str, Any], base: dict[str, Any]) -> None:
    def lat(p: dict[str, Any]) -> str:
        lm = p["latency_ms"]
        return f"{lm['p50']:.1f} / {lm['p99']:.1f} / {lm['max']:.1f}"

    def cores(s: float, p: dict[str, Any]) -> str:
        return f"{s:.2f} s ({s / p['window_s'] * 100:.0f}% core)"

    oc, bc = ours["redis_conns"], base["redis_conns"]
    rows = [
        ("readers", str(ours["readers"]), str(base["readers"])),
        ("jobs", str(ours["jobs"]), str(base["jobs"])),
        (
            "events delivered (pieces)",
            f"{ours['events']} ({ours['pieces']})",
            f"{base['events']} ({base['pieces']})",
        ),
        (
            "events / s (pieces / s)",
            f"{ours['events_per_s']:.0f} ({ours['pieces_per_s']:.0f})",
            f"{base['events_per_s']:.0f} ({base['pieces_per_s']:.0f})",
        ),
        ("latency p50 / p99 / max (ms)", lat(ours), lat(base)),
        ("delivery window (s)", f"{ours['window_s']:.2f}", f"{base['window_s']:.2f}"),
        (
            "API CPU (of which sys)",
            f"{cores(ours['cpu_s']['api'], ours)} ({ours['cpu_s']['api_sys']:.1f} s sys)",
            "- (no API in the path)",
        ),
        ("API CPU per event (us)", f"{ours['api_cpu_per_event_us']:.0f}", "-"),
        ("API RSS max (MB)", f"{ours['api_rss_mb_max']:.0f}", "-"),
        (
            "reader process CPU",
            cores(ours["cpu_s"]["readers"], ours),
            cores(base["cpu_s"]["readers"], base),
        ),
        ("Redis CPU", cores(ours["cpu_s"]["redis"], ours), cores(base["cpu_s"]["redis"], base)),
        (
            "Redis connections held",
            f"{fmt(oc['api_named_delivery_max'])} by the API "
            f"(max {fmt(oc['api_named_max'])} incl. connect; {fmt(oc['api_sockets_max'])} sockets)",
            f"{fmt(bc['xread_named_max'])} by the readers",
        ),
        (
            "  API's, by last command",
            ", ".join(f"{k} {v}" for k, v in sorted(oc["api_last_commands_at_peak"].items())),
            "-",
        ),
        (
            "connect + first event",
            f"{ours['connect_s']:.1f} s (API CPU {ours['api_cpu_connect_s']:.1f} s)",
            f"{base['connect_s']:.1f} s",
        ),
        (
            "writer max lag (ms)",
            f"{ours['writer_max_lag_ms']:.1f}",
            f"{base['writer_max_lag_ms']:.1f}",
        ),
    ]
    width = max(len(r[0]) for r in rows) + 2
    col = max(len(r[1]) for r in rows) + 2
    print(
        f"\nreaders benchmark: {args.readers} readers over {args.jobs} jobs, {args.rate} deltas/s "
        f"per job for {args.seconds:g} s; writer = EventWriter, flush window {args.flush_ms:g} ms "
        f"(latency includes it)"
    )
    print(f"{'':<{width}}{'ours (SSE, 1 API process)':<{col}}baseline (XREAD BLOCK per reader)")
    for label, a, b in rows:
        print(f"{label:<{width}}{a:<{col}}{b}")
    for p in (ours, base):
        line = (
            f"verification {p['name']}: {p['verified_readers']}/{p['readers']} readers got every "
            f"event in order (no gap/duplicate), every delta piece, result then done"
        )
        print(line if not p["problems"] else f"PROBLEM {line}")
        for problem in p["problems"][:5]:
            print(f"  {problem}")
        if len(p["problems"]) > 5:
            print(f"  ... and {len(p['problems']) - 5} more")


def run(args: argparse.Namespace) -> int:
    from aijobs.devtools.redis_server import free_port, start_redis
    from aijobs.store import Database, JobRepository
    from aijobs.store.migrate import upgrade

    raise_nofile()
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="aijobs-readers-")))
        server = start_redis(tmp / "redis")
        stack.callback(server.stop)
        db_url = f"sqlite:///{tmp / 'jobs.db'}"
        upgrade(db_url)
        db = Database(db_url)
        repo = JobRepository(db)
        job_ids = [
            repo.create(
                tenant=TENANT,
                kind="generate",
                model=MODEL,
                payload={"kind": "generate", "model": MODEL, "messages": []},
                meta={},
            ).id
            for _ in range(2 * args.jobs)
        ]
        db.dispose()
        port = free_port()
        env = child_env(
            {
                "REDIS_URL": server.url,
                "DATABASE_URL": db_url,
                "AIJOBS_API_KEYS": f"{TENANT}:{API_KEY}",
                "AIJOBS_SSE_KEEPALIVE_S": "10",
                # One tenant opens every reader: lift the per-tenant reader cap (0 = off).
                "AIJOBS_TENANT_MAX_READERS": "0",
                "AIJOBS_LOG_LEVEL": "WARNING",
            }
        )
        api = spawn("api", [*aijobs_command(), "api", "--port", str(port)], env, tmp, pipes=False)
        ctx = Context(args, tmp, server.url, server.port, server.process.pid, api, "")
        ctx.api_addr = f"127.0.0.1:{port}"

        def stop_children() -> None:
            for child in reversed(ctx.children):
                child.stop()
            api.stop()

        stack.callback(stop_children)
        wait_ready(f"http://127.0.0.1:{port}/readyz", api)
        ours = run_phase(ctx, "ours", "sse", job_ids[: args.jobs])
        base = run_phase(ctx, "baseline", "xread", job_ids[args.jobs :])
        print_table(args, ours, base)
        report = {"config": vars(args), "phases": [ours, base]}
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2))
        if os.environ.get("AIJOBS_BENCH_KEEP_LOGS"):
            keep = Path(os.environ["AIJOBS_BENCH_KEEP_LOGS"])
            keep.mkdir(parents=True, exist_ok=True)
            for log in tmp.glob("*.log"):
                (keep / log.name).write_bytes(log.read_bytes())
        return 1 if ours["problems"] or base["problems"] else 0


def wait_ready(url: str, api: Child, timeout_s: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        if not api.alive():
            raise BenchError(f"the API exited ({api.process.returncode}):\n{api.log_tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0, trust_env=False).is_success:
                return
        if time.monotonic() > deadline:
            raise BenchError(f"the API did not get ready in {timeout_s:.0f}s:\n{api.log_tail()}")
        time.sleep(0.1)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readers", type=int, default=1000, help="concurrent readers")
    parser.add_argument("--jobs", type=int, default=50, help="running jobs (per phase)")
    parser.add_argument("--rate", type=float, default=20.0, help="deltas per second per job")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long the writer writes")
    parser.add_argument("--flush-ms", type=float, default=5.0, help="EventWriter flush window")
    parser.add_argument("--clients", type=int, default=1, help="load-generator processes")
    parser.add_argument("--json", help="write the figures to this file")
    hidden = argparse.SUPPRESS
    parser.add_argument("--role", choices=["bench", "writer", "sse", "xread"], default="bench")
    parser.add_argument("--redis-url", help=hidden)
    parser.add_argument("--api", help=hidden)
    parser.add_argument("--jobs-file", help=hidden)
    parser.add_argument("--client-index", type=int, default=0, help=hidden)
    parser.add_argument("--timeout", type=float, default=300.0, help=hidden)
    parser.add_argument("--out", help=hidden)
    args = parser.parse_args(argv)
    if args.readers < 1 or args.jobs < 1 or args.rate <= 0 or args.seconds <= 0:
        parser.error("--readers, --jobs, --rate and --seconds must be positive")
    if args.clients < 1:
        parser.error("--clients must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    args = parse_args(argv)
    if args.role == "writer":
        return writer_main(args)
    if args.role in ("sse", "xread"):
        return loadgen_main(args)

    def on_term(_sig: int, _frame: Any) -> None:
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, on_term)
    try:
        return run(args)
    except BenchError as exc:
        print(f"readers benchmark failed: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
