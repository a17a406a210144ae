"""The helper processes of the readers benchmark: a writer that plays the worker, and
load generators that hold the readers (SSE through the API, or one XREAD connection each).

    python -m ops.bench.readers_load --role writer|sse|xread --redis-url URL --jobs-file F ...

The writer prints ``READY`` once every job's attempt has begun, waits for ``GO`` on its
stdin, writes the deltas and prints ``DONE``. A load generator prints ``READY n`` once its
readers have the first event (n without an error), then ``DONE`` when all have ``done``.
Readers are raw asyncio protocols (uvloop when present) so the generator costs little CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import sys
import time
from array import array
from pathlib import Path
from typing import Any

TENANT = "bench"
API_KEY = "bench-key-0123456789"
XREAD_CLIENT_NAME = "bench-xread"
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


# -- the writer (plays the worker) -------------------------------------------------------


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


# -- the readers (load generator) --------------------------------------------------------


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
    track: Any,
    host: str,
    port: int,
    job_id: str,
    gate: asyncio.Semaphore,
    protocol: type[SseReader] = SseReader,
) -> None:
    """Read the job's events through ``protocol`` into ``track`` (a :class:`Track`, or
    anything with ``finished``, ``error`` and ``on_event``) until ``done``."""
    loop = asyncio.get_running_loop()
    request = (
        f"GET /v1/jobs/{job_id}/events HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {API_KEY}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()
    closed: asyncio.Future[None] = loop.create_future()
    try:
        async with gate:
            transport, _ = await loop.create_connection(
                lambda: protocol(track, request, closed), host, port
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=["writer", "sse", "xread"], required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--jobs-file", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--api", default="", help="host:port of the API (sse)")
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--flush-ms", type=float, default=5.0)
    parser.add_argument("--readers", type=int, default=1)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--client-index", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=300.0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return writer_main(args) if args.role == "writer" else loadgen_main(args)


if __name__ == "__main__":
    sys.exit(main())
