"""A webhook receiver for the tests: a real HTTP server on loopback that verifies every
request with the `standardwebhooks` package and keeps one event per `webhook-id`, as a
receiver should. It can answer 500 to the first attempts of each event, hold an attempt
open until told, or redirect."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.support import wait_for


@dataclass
class Arrival:
    """One request as it arrived."""

    path: str
    headers: dict[str, str]
    body: bytes
    #: The JSON the signature was verified for; None if it did not verify.
    verified: Any
    error: str | None = None
    #: The status the receiver answered.
    answered: int = 0


@dataclass
class Plan:
    """How the receiver answers."""

    #: Answer 500 to this many attempts of each event before a 200.
    fail_first: int = 0
    #: Hold the first attempt of each event open until ``release`` is set.
    hold_first: bool = False
    #: Answer every request with this redirect instead.
    redirect_to: str | None = None
    release: threading.Event = field(default_factory=threading.Event)


class Receiver:
    """The server's state: every arrival, and the events kept (deduplicated by id)."""

    def __init__(self, secret: str, plan: Plan) -> None:
        self.webhook = Webhook(secret)
        self.plan = plan
        self.arrivals: list[Arrival] = []
        self.held = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.port = self._server.server_address[1]

    @property
    def url(self) -> str:
        """The receiver's webhook URL (plain http on loopback: it must be allow-listed)."""
        return f"http://127.0.0.1:{self.port}/hooks/aijobs?token=t0"

    # -- what arrived ---------------------------------------------------------------

    def attempts_of(self, msg_id: str) -> int:
        with self._lock:
            return sum(1 for a in self.arrivals if a.headers.get("webhook-id") == msg_id)

    def events(self) -> dict[str, Any]:
        """One payload per ``webhook-id``: what a deduplicating receiver keeps."""
        with self._lock:
            kept: dict[str, Any] = {}
            for arrival in self.arrivals:
                if arrival.verified is not None:
                    kept.setdefault(arrival.headers["webhook-id"], arrival.verified)
            return kept

    def by_job(self) -> dict[str, list[str]]:
        """Job id -> the webhook ids that carried it."""
        found: dict[str, list[str]] = {}
        for msg_id, payload in self.events().items():
            found.setdefault(payload["id"], []).append(msg_id)
        return found

    def delivered(self, job_ids: list[str]) -> bool:
        """Whether each job's webhook has been answered 2xx at least once."""
        with self._lock:
            done = {
                a.verified["id"] for a in self.arrivals if a.verified and 200 <= a.answered < 300
            }
        return set(job_ids) <= done

    def wait_delivered(self, job_ids: list[str], timeout_s: float = 60) -> None:
        wait_for(lambda: self.delivered(job_ids), timeout_s=timeout_s, what="webhooks")

    def unverified(self) -> list[Arrival]:
        with self._lock:
            return [a for a in self.arrivals if a.verified is None]

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(a.headers.get("webhook-id", "") for a in self.arrivals)

    # -- the server -----------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver._arrived(self, headers, body)

            def log_message(self, *_: Any) -> None:
                pass

        return Handler

    def _arrived(
        self, handler: BaseHTTPRequestHandler, headers: dict[str, str], body: bytes
    ) -> None:
        try:
            verified, error = self.webhook.verify(body, headers), None
        except (WebhookVerificationError, ValueError) as exc:
            verified, error = None, str(exc)
        arrival = Arrival(handler.path, headers, body, verified, error)
        msg_id = headers.get("webhook-id", "")
        with self._lock:
            self.arrivals.append(arrival)
            seen = sum(1 for a in self.arrivals if a.headers.get("webhook-id") == msg_id)
        plan = self.plan
        if plan.hold_first and seen == 1:
            self.held.set()
            plan.release.wait(60)
        status = 302 if plan.redirect_to else 500 if seen <= plan.fail_first else 200
        with self._lock:
            arrival.answered = status
        with suppress(OSError):  # the sender may be gone (a killed worker)
            handler.send_response(status)
            if plan.redirect_to:
                handler.send_header("Location", plan.redirect_to)
            handler.send_header("Content-Length", "2")
            handler.end_headers()
            handler.wfile.write(b"ok")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.plan.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


@contextmanager
def running_receiver(secret: str, plan: Plan | None = None) -> Iterator[Receiver]:
    """A ``Receiver`` for the duration of the block."""
    receiver = Receiver(secret, plan or Plan())
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


def payload_of(arrival: Arrival) -> dict[str, Any]:
    return json.loads(arrival.body)
