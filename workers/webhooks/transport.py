"""One webhook POST: to an address checked after resolution, never redirected, under a
total deadline.

``httpcore`` (httpx's engine) is used directly, with a network backend of our own, because
the checks must sit where the socket is opened: the backend resolves the host itself,
refuses the connection if any address is loopback, private, link-local or reserved (unless
the host is listed), and connects to the address it checked — so a name cannot point at a
public address for the check and a private one for the connection. TLS still verifies the
certificate against the URL's host name (SNI), not the address. httpcore follows no
redirects: a 3xx is an answer like any other non-2xx.

Every read, write and handshake is given only what is left of one deadline, so a receiver
that trickles its answer a byte at a time is cut off at ``timeout_s`` like one that says
nothing. The body of the answer is never read: only its status and headers.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpcore

from aijobs.webhooks.urls import IPAddress, WebhookTarget, address_refusal

#: host, port -> the addresses to try, in order (``socket.getaddrinfo`` by default; tests
#: give a resolver of their own to point a name at a local address).
Resolver = Callable[[str, int], list[str]]

_USER_AGENT = "aijobs-webhooks"
log = logging.getLogger(__name__)


class AddressRefused(Exception):
    """Raised when the host resolves to an address that may not be connected to."""


class DeadlinePassed(httpcore.TimeoutException):
    """Raised when the request's total time is up."""


@dataclass(frozen=True, slots=True)
class Answer:
    """How one POST ended: an HTTP status, or an error without one."""

    status: int | None
    error: str | None = None
    #: The receiver's Retry-After, in seconds, when it gave one.
    retry_after_s: float | None = None

    @property
    def ok(self) -> bool:
        """A 2xx: delivered."""
        return self.status is not None and 200 <= self.status < 300


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` has now, in the resolver's order, without repeats."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _ssl_context() -> ssl.SSLContext:
    try:
        import certifi  # httpx's own CA bundle, when present
    except ImportError:  # pragma: no cover - httpx depends on it
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())


_SSL = _ssl_context()


class _Deadline:
    def __init__(self, timeout_s: float) -> None:
        self.at = time.monotonic() + timeout_s

    def left(self, asked: float | None) -> float:
        """The time an operation may take: what it asked for, within the deadline."""
        remaining = self.at - time.monotonic()
        if remaining <= 0:
            raise DeadlinePassed("the webhook's deadline passed")
        return remaining if asked is None else min(asked, remaining)


class _DeadlineStream(httpcore.NetworkStream):
    """A stream whose every operation ends by the request's deadline."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: _Deadline) -> None:
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._deadline.left(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._deadline.left(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname, self._deadline.left(timeout))
        return _DeadlineStream(inner, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _CheckedBackend(httpcore.NetworkBackend):
    """Resolves, checks every address, and connects to a checked one."""

    def __init__(self, *, listed: bool, resolve: Resolver, deadline: _Deadline) -> None:
        self._listed = listed
        self._resolve = resolve
        self._deadline = deadline
        self._sync = httpcore.SyncBackend()
        #: The address connected to (for the record and the tests).
        self.connected_to: str | None = None

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = self._resolve(host, port)
        except OSError as exc:
            raise httpcore.ConnectError(f"{host} does not resolve ({exc})") from exc
        if not addresses:
            raise httpcore.ConnectError(f"{host} has no address")
        if not self._listed:
            for text in addresses:
                reason = address_refusal(_parse(text))
                if reason:
                    # One bad address refuses the name: a host that mixes public and
                    # private addresses is one whose next answer may be the private one.
                    # The address goes to the operator's log only: the job's record is the
                    # tenant's, and must not map internal names to internal addresses.
                    log.info("webhook host %s resolves to %s (%s): refused", host, text, reason)
                    raise AddressRefused(f"{host} resolves to a {reason} address")
        error: Exception | None = None
        for text in addresses:
            try:
                stream = self._sync.connect_tcp(
                    text, port, timeout=self._deadline.left(timeout),
                    local_address=local_address, socket_options=socket_options,
                )  # fmt: skip
            except httpcore.ConnectError as exc:
                error = exc
                continue
            self.connected_to = text
            return _DeadlineStream(stream, self._deadline)
        assert error is not None
        raise error

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:  # pragma: no cover - never asked: URLs are http(s)
        raise httpcore.ConnectError("unix sockets are not webhook targets")


def _parse(text: str) -> IPAddress:
    return ipaddress.ip_address(text.partition("%")[0])  # a zone id is not the address


def post(
    target: WebhookTarget,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout_s: float,
    resolve: Resolver = system_resolver,
) -> Answer:
    """POST ``body`` to ``target`` once; never raises for what the network or the
    receiver did (that is the answer)."""
    deadline = _Deadline(timeout_s)
    backend = _CheckedBackend(listed=target.listed, resolve=resolve, deadline=deadline)
    url = httpcore.URL(
        scheme=target.scheme.encode(),
        host=target.host.encode("ascii"),
        port=target.port,
        target=target.target.encode("ascii"),
    )
    sent = [
        ("Host", target.host_header),
        ("User-Agent", _USER_AGENT),
        ("Content-Type", "application/json"),
        *headers.items(),
    ]
    timeouts = {"connect": timeout_s, "read": timeout_s, "write": timeout_s, "pool": timeout_s}
    try:
        with (
            httpcore.ConnectionPool(
                ssl_context=_SSL, network_backend=backend, max_connections=1, retries=0
            ) as pool,
            pool.stream(
                "POST", url, headers=sent, content=body, extensions={"timeout": timeouts}
            ) as response,
        ):
            status = int(response.status)
            retry_after = _retry_after_s(response.headers)
    except AddressRefused as exc:
        return Answer(None, f"refused: {exc}")
    except httpcore.TimeoutException:
        return Answer(None, f"timed out after {timeout_s:g}s")
    except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
        return Answer(None, f"{type(exc).__name__}: {exc}"[:300])
    error = None
    if not 200 <= status < 300:
        error = f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")
    return Answer(status, error, retry_after)


def _retry_after_s(headers: list[tuple[bytes, bytes]]) -> float | None:
    """A Retry-After in seconds (the date form is not worth a parser here)."""
    for name, value in headers:
        if name.lower() == b"retry-after":
            try:
                return max(0.0, float(value.decode("ascii").strip()))
            except (UnicodeDecodeError, ValueError):
                return None
    return None
