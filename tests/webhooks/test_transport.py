"""One POST, on real sockets: the address is checked after resolution and is the one
connected to, redirects are answers, and a receiver that trickles is cut at the deadline.

A resolver of the test's own points made-up names at loopback (the only place a test may
send to), standing in for DNS answers that point at private addresses."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from aijobs.webhooks.transport import Resolver, post
from aijobs.webhooks.urls import check_url
from tests.webhooks.receiver import Plan, Receiver, running_receiver

BODY = b'{"id":"j1","status":"succeeded"}'
HEADERS = {"webhook-id": "msg_1", "webhook-timestamp": "1", "webhook-signature": "v1,x"}


def to_loopback(calls: list[str]) -> Resolver:
    def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return ["127.0.0.1"]

    return resolve


def test_a_name_that_resolves_to_a_private_address_is_never_connected_to(
    receiver: Receiver,
) -> None:
    calls: list[str] = []
    target = check_url(f"https://hooks.example.com:{receiver.port}/h", allowed_hosts=())
    answer = post(target, BODY, HEADERS, timeout_s=2, resolve=to_loopback(calls))
    assert answer.status is None
    # The tenant learns the class of address, not the address (the log has it).
    assert answer.error == "refused: hooks.example.com resolves to a loopback address"
    assert calls == ["hooks.example.com"]
    assert receiver.arrivals == []


def test_a_listed_name_is_connected_at_the_address_checked_with_its_own_host_header(
    receiver: Receiver,
) -> None:
    calls: list[str] = []
    target = check_url(f"http://hooks.test:{receiver.port}/h?k=v", allowed_hosts=["hooks.test"])
    answer = post(target, BODY, HEADERS, timeout_s=2, resolve=to_loopback(calls))
    assert (answer.status, answer.error, answer.ok) == (200, None, True)
    assert calls == ["hooks.test"]  # resolved once: the connection went where the check looked
    [arrival] = receiver.arrivals
    assert arrival.path == "/h?k=v"
    assert arrival.headers["host"] == f"hooks.test:{receiver.port}"
    assert arrival.headers["content-type"] == "application/json"
    assert arrival.headers["webhook-id"] == "msg_1"
    assert arrival.body == BODY


def test_redirects_are_not_followed(secret: str) -> None:
    with (
        running_receiver(secret) as elsewhere,
        running_receiver(secret, Plan(redirect_to=elsewhere.url)) as receiver,
    ):
        target = check_url(receiver.url, allowed_hosts=["127.0.0.1"])
        answer = post(target, BODY, HEADERS, timeout_s=2)
        assert answer.status == 302
        assert answer.error == "HTTP 302 (redirects are not followed)"
        assert len(receiver.arrivals) == 1
        assert elsewhere.arrivals == []


@pytest.fixture
def trickler() -> Iterator[int]:
    """A server that answers one byte of its status line every 50 ms, forever."""
    stop = threading.Event()
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100_000:
                    if stop.wait(0.05):
                        return
                    try:
                        conn.sendall(bytes([byte]))
                    except OSError:
                        break

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(5)
    server.close()


def test_a_receiver_that_trickles_is_cut_at_the_deadline(trickler: int) -> None:
    target = check_url(f"http://127.0.0.1:{trickler}/h", allowed_hosts=["127.0.0.1"])
    started = time.monotonic()
    answer = post(target, BODY, HEADERS, timeout_s=1.0)
    elapsed = time.monotonic() - started
    assert answer.status is None
    assert answer.error == "timed out after 1s"
    assert elapsed < 3.0  # each read got only what was left of the deadline


def test_a_closed_port_is_an_error_without_a_status() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    target = check_url(f"http://127.0.0.1:{port}/h", allowed_hosts=["127.0.0.1"])
    answer = post(target, BODY, HEADERS, timeout_s=2)
    assert answer.status is None and answer.error and "ConnectError" in answer.error
