"""An HTTP/1.1 proxy for tests: in front of the API, it logs every request and how many
bytes the API sent back, and misbehaves on a script.

Each request is read whole (head and Content-Length body), then handled by the next
action planned for its method and path prefix, or forwarded when none is left:

- ``Forward()``: to the API on a fresh connection, relaying its answer as it comes;
- ``Answer(status, headers, body)``: the proxy answers itself (a 503, a 429);
- ``Drop()``: close the connection without an answer (the client sees a reset);
- ``ForwardThenCut()``: the API gets the request and answers it, the client never hears
  (the "did my submit happen?" case);
- ``CutAfter(n)``: relay the first ``n`` bytes of the answer, then cut (a stream that dies
  mid-way).

Every answer closes its connection, so one connection is one request: simple to reason
about, and the client's reconnects are visible in the log.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections import defaultdict, deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Forward:
    pass


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"detail": "the proxy says no"}'


@dataclass(frozen=True)
class Drop:
    pass


@dataclass(frozen=True)
class ForwardThenCut:
    pass


@dataclass(frozen=True)
class CutAfter:
    nbytes: int


Action = Forward | Answer | Drop | ForwardThenCut | CutAfter


@dataclass
class Seen:
    """One request that reached the proxy, and what came of it."""

    method: str
    target: str
    headers: dict[str, str]
    action: Action
    #: Bytes the API sent for this request (relayed or not), its head included.
    upstream_bytes: int = 0
    #: The API's whole answer when the proxy read it without relaying it.
    swallowed: bytes = b""

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


class HttpProxy:
    """Listens on 127.0.0.1 (a free port) and forwards to ``upstream`` (host, port)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.seen: list[Seen] = []
        self._plans: dict[tuple[str, str], deque[Action]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._accept, daemon=True, name="http-proxy")
        self._thread.start()

    @classmethod
    def before(cls, url: str) -> HttpProxy:
        """A proxy in front of the API at ``url`` (http://127.0.0.1:PORT)."""
        host, port = url.removeprefix("http://").rstrip("/").split(":")
        return cls((host, int(port)))

    def plan(self, method: str, path_prefix: str, *actions: Action) -> None:
        """The next requests of ``method`` whose path starts with ``path_prefix`` get
        ``actions``, one each, in order (the longest matching prefix wins)."""
        with self._lock:
            self._plans[(method, path_prefix)].extend(actions)

    def requests(self, method: str, path_prefix: str = "") -> list[Seen]:
        """The requests seen so far of ``method`` under ``path_prefix``."""
        with self._lock:
            return [s for s in self.seen if s.method == method and s.path.startswith(path_prefix)]

    def upstream_bytes(self) -> int:
        """Every byte the API sent through the proxy."""
        with self._lock:
            return sum(s.upstream_bytes for s in self.seen)

    def close(self) -> None:
        """Stop listening (waking the accept loop) and cut every open connection."""
        _close(self._listener)
        with self._lock:
            sockets = list(self._open)
        for sock in sockets:
            _close(sock)
        self._thread.join(5)

    def __enter__(self) -> HttpProxy:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- serving ------------------------------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._open.add(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _next_action(self, method: str, path: str) -> Action:
        with self._lock:
            keys = [
                key for key, actions in self._plans.items()
                if actions and key[0] == method and path.startswith(key[1])
            ]  # fmt: skip
            if not keys:
                return Forward()
            return self._plans[max(keys, key=lambda key: len(key[1]))].popleft()

    def _serve(self, client: socket.socket) -> None:
        try:
            request = _read_request(client)
            if request is None:
                return
            head, body = request
            lines = head.decode("latin1").split("\r\n")
            method, target, _version = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            seen = Seen(method, target, headers, self._next_action(method, target.split("?")[0]))
            with self._lock:
                self.seen.append(seen)
            self._handle(client, seen, head, body)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(client)
            _close(client)

    def _handle(self, client: socket.socket, seen: Seen, head: bytes, body: bytes) -> None:
        action = seen.action
        if isinstance(action, Drop):
            return
        if isinstance(action, Answer):
            extra = "".join(f"{k}: {v}\r\n" for k, v in action.headers.items())
            client.sendall(
                f"HTTP/1.1 {action.status} Proxy\r\ncontent-type: application/json\r\n"
                f"content-length: {len(action.body)}\r\nconnection: close\r\n{extra}\r\n".encode()
                + action.body
            )
            return
        upstream = socket.create_connection(self.upstream, timeout=30)
        with self._lock:
            self._open.add(upstream)
        try:
            upstream.sendall(_with_connection_close(head) + body)
            limit = action.nbytes if isinstance(action, CutAfter) else None
            relayed = 0
            while True:
                data = upstream.recv(65536)
                if not data:
                    return
                with self._lock:
                    seen.upstream_bytes += len(data)
                if isinstance(action, ForwardThenCut):
                    seen.swallowed += data
                    continue
                if limit is not None and relayed + len(data) >= limit:
                    client.sendall(data[: limit - relayed])
                    return
                client.sendall(data)
                relayed += len(data)
        finally:
            with self._lock:
                self._open.discard(upstream)
            _close(upstream)


def _read_request(sock: socket.socket) -> tuple[bytes, bytes] | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        body += chunk
    return head, body


def _with_connection_close(head: bytes) -> bytes:
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
    return b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n"


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
