"""Server-Sent Events, read the way the spec reads them: lines end at CR, LF or CRLF only.

``str.splitlines`` (and clients built on it) also end lines at U+2028, U+2029, U+0085,
form feeds and more, which are ordinary characters inside an event's JSON ``data`` — a
model that writes one would have its chunk cut in two. Both the worker's provider path
and the Python client read events through this module, on bytes, so no decoding runs
before a line is complete. It has no dependencies.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

_LINE_END = re.compile(rb"\r\n|\r|\n")


class _Splitter:
    """Cuts a byte stream into lines; a CR at the end of a chunk may be half a CRLF."""

    __slots__ = ("_rest", "_skip_lf")

    def __init__(self) -> None:
        self._rest = b""
        self._skip_lf = False

    def feed(self, chunk: bytes) -> list[bytes]:
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        data = self._rest + chunk if self._rest else chunk
        if b"\r" not in data:  # the common case: LF only
            lines = data.split(b"\n")
            self._rest = lines.pop()
            return lines
        lines = []
        start = 0
        for match in _LINE_END.finditer(data):
            lines.append(data[start : match.start()])
            start = match.end()
            if match.group() == b"\r" and start == len(data):
                self._skip_lf = True
        self._rest = data[start:]
        return lines

    def end(self) -> list[bytes]:
        rest, self._rest = self._rest, b""
        return [rest] if rest else []


def iter_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The lines of a byte stream, without their line ends."""
    splitter = _Splitter()
    for chunk in chunks:
        if chunk:
            yield from splitter.feed(chunk)
    yield from splitter.end()


async def aiter_lines(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """The lines of an asynchronous byte stream, without their line ends."""
    splitter = _Splitter()
    async for chunk in chunks:
        if chunk:
            for line in splitter.feed(chunk):
                yield line
    for line in splitter.end():
        yield line


@dataclass(frozen=True, slots=True)
class SseMessage:
    """One dispatched event: its fields as the spec defines them."""

    event: str
    data: str
    id: str | None

    def json(self) -> Any:
        """``data`` parsed as JSON."""
        return json.loads(self.data)


class SseDecoder:
    """Turns lines into events (``event``, ``data`` — joined across lines — and ``id``);
    comments and ``retry`` are skipped."""

    __slots__ = ("_data", "_event", "_id")

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, line: bytes) -> SseMessage | None:
        """Take one line; an event when a blank line completes one."""
        if not line:
            if not self._data:
                self._event = ""
                return None
            message = SseMessage(self._event or "message", "\n".join(self._data), self._id)
            self._event, self._data = "", []
            return message
        if line[:1] == b":":
            return None
        name, _, value = line.decode("utf-8", "replace").partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        return None
