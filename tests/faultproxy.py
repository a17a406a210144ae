"""A TCP proxy that misbehaves on command, for faults a real Redis cannot be asked to make.

It forwards bytes between clients and one upstream server, each connection on its own
pair of threads, and can be told to:

- ``drop_after_reply()``: let the server answer the next request it gets, then cut that
  connection before the client reads the answer (Redis ran the command; the client saw a
  connection error: the "did it happen?" case a retry must not double);
- ``blackhole()``: stop forwarding on every open connection without closing it (a
  half-open socket: the peer vanished and nobody said so); new connections still work;
- ``refuse(True)``: close new connections at once and cut the open ones (Redis is down).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field


@dataclass(eq=False)
class _Link:
    client: socket.socket
    upstream: socket.socket
    blackholed: threading.Event = field(default_factory=threading.Event)
    drop_reply: bool = False

    def close(self) -> None:
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


class FaultProxy:
    """Listens on 127.0.0.1 and forwards to ``upstream_port``."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._links: set[_Link] = set()
        self._lock = threading.Lock()
        self._refusing = False
        self._drop_next_reply = threading.Event()
        self._skip_replies = 0
        self._pattern: bytes | None = None
        self.dropped_replies = 0
        self._thread = threading.Thread(target=self._accept, daemon=True, name="fault-proxy")
        self._thread.start()

    @property
    def url(self) -> str:
        """A redis:// URL through the proxy."""
        return f"redis://127.0.0.1:{self.port}/0"

    def drop_after_reply(self, *, skip: int = 0) -> None:
        """Cut the next connection that gets an answer from the server, before the client
        reads it (after letting ``skip`` answers through: a pipeline of scripts first asks
        ``SCRIPT EXISTS``)."""
        self._skip_replies = skip
        self._drop_next_reply.set()

    def drop_reply_to(self, pattern: bytes) -> None:
        """Cut the connection that sends a request containing ``pattern``, right after
        the server answered it (one time)."""
        self._pattern = pattern

    def blackhole(self) -> None:
        """Freeze every open connection: nothing more is forwarded, nothing is closed."""
        with self._lock:
            for link in self._links:
                link.blackholed.set()

    def refuse(self, on: bool) -> None:
        """While on, new connections are closed at once and open ones are cut."""
        with self._lock:
            self._refusing = on
            links = list(self._links) if on else []
        for link in links:
            link.close()

    def close(self) -> None:
        """Stop listening and cut every connection."""
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            links = list(self._links)
        for link in links:
            link.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                refusing = self._refusing
            if refusing:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            link = _Link(client, upstream)
            with self._lock:
                self._links.add(link)
            threading.Thread(target=self._pump, args=(link, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(link, False), daemon=True).start()

    def _pump(self, link: _Link, to_upstream: bool) -> None:
        source, sink = (link.client, link.upstream) if to_upstream else (link.upstream, link.client)
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if link.blackholed.is_set():
                    continue  # swallowed: the sender's write succeeds, no answer ever comes
                if to_upstream and self._pattern is not None and self._pattern in data:
                    self._pattern = None
                    link.drop_reply = True
                if not to_upstream and link.drop_reply:
                    self.dropped_replies += 1
                    break
                if not to_upstream and self._drop_next_reply.is_set():
                    if self._skip_replies > 0:
                        self._skip_replies -= 1
                        sink.sendall(data)
                        continue
                    self._drop_next_reply.clear()
                    self.dropped_replies += 1
                    break  # the server answered; the client never hears it
                sink.sendall(data)
        except OSError:
            pass
        finally:
            if not link.blackholed.is_set():
                link.close()
                with self._lock:
                    self._links.discard(link)
