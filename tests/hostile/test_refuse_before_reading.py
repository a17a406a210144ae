"""The key is checked before the body is read; bodies are bounded per kind; a connection
that dribbles its request is dropped."""

from __future__ import annotations

import socket
import time

import httpx
import psutil

from tests.hostile.conftest import KEY_H, rss_mb
from tests.support import ApiProcess, wait_for


def _peak_rss_while(api: ApiProcess, action: object) -> float:
    """The API's peak RSS (MB) while ``action()`` runs, sampled from another thread."""
    import threading

    process = psutil.Process(api.procs[-1].pid)
    peak = [process.memory_info().rss]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            stop.wait(0.005)

    thread = threading.Thread(target=sample)
    thread.start()
    try:
        action()  # type: ignore[operator]
    finally:
        stop.set()
        thread.join()
    return peak[0] / 2**20


def test_a_60_mb_body_without_a_key_is_refused_unread(api_proc: ApiProcess) -> None:
    body = b'{"kind":"embed","model":"m","input":["' + b"x" * (60 * 2**20) + b'"]}'
    before = rss_mb(api_proc)
    answers: list[int] = []

    def send() -> None:
        try:
            headers = {"Content-Type": "application/json",
                       "Authorization": "Bearer wrong-key-0123456789"}  # fmt: skip
            answer = httpx.post(f"{api_proc.url}/v1/jobs", content=body, timeout=60,
                                headers=headers)  # fmt: skip
            answers.append(answer.status_code)
        except httpx.HTTPError:
            answers.append(-1)  # the server may close before the upload ends: also fine

    peak = _peak_rss_while(api_proc, send)
    assert answers and answers[0] in (401, -1), answers
    assert peak - before < 50, f"the API grew {peak - before:.0f} MB for an unauthenticated body"
    # Without any key at all, the same.
    anonymous = httpx.post(f"{api_proc.url}/v1/jobs", content=b"{}", timeout=10)
    assert anonymous.status_code == 401


def test_bodies_are_bounded_per_kind(api_proc: ApiProcess) -> None:
    auth = {"Authorization": f"Bearer {KEY_H}"}
    # Over AIJOBS_MAX_BODY_BYTES (2 MiB), which holds every kind but embed.
    messages = [{"role": "user", "content": "x" * 800_000} for _ in range(3)]
    chat = {"kind": "generate", "model": "m", "messages": messages}
    answer = httpx.post(f"{api_proc.url}/v1/jobs", json=chat, headers=auth, timeout=30)
    assert answer.status_code == 413, answer.text
    assert "only embed jobs may be larger" in answer.json()["detail"]

    def chunks():  # a chunked body (no Content-Length) past the submissions' limit
        yield b'{"kind":"embed","model":"m","input":["'
        for _ in range(70):
            yield b"y" * 2**20
        yield b'"]}'

    chunked = httpx.post(f"{api_proc.url}/v1/jobs", content=chunks(), timeout=60,
                         headers={**auth, "Content-Type": "application/json"})  # fmt: skip
    assert chunked.status_code == 413


def _slow_request(port: int, every_s: float, lines: int) -> float:
    """Dribble a request one header line every ``every_s``; seconds until the server hung up."""
    sock = socket.create_connection(("127.0.0.1", port))
    started = time.monotonic()
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        for i in range(lines):
            sock.settimeout(every_s)
            try:
                if sock.recv(1) == b"":
                    return time.monotonic() - started
            except TimeoutError:
                pass
            try:
                sock.sendall(f"X-Slow-{i}: y\r\n".encode())
            except OSError:
                return time.monotonic() - started
        return float("inf")
    finally:
        sock.close()


def test_slow_clients_are_dropped(api_proc: ApiProcess) -> None:
    # AIJOBS_HEADER_TIMEOUT_S is 2 here: a head that is still arriving after 2 s is cut.
    took = _slow_request(api_proc.port, every_s=0.5, lines=40)
    assert took < 6, f"a dribbling client held its connection {took:.1f}s"
    # A connection that never says anything is closed too.
    idle = socket.create_connection(("127.0.0.1", api_proc.port))
    idle.settimeout(10)
    started = time.monotonic()
    assert idle.recv(1) == b""
    assert time.monotonic() - started < 6
    idle.close()
    # Normal requests are unaffected.
    wait_for(lambda: httpx.get(f"{api_proc.url}/healthz").status_code == 200)
