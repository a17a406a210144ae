"""``follow`` and ``submit --follow``: a job's events, shown as they come.

- generate: the text on stdout. On a terminal it streams; when a ``reset`` starts the
  text over (a retry), a note on stderr says so and the new attempt's text follows on a
  fresh line; a reset that only restores the text already shown (after the server lost
  data) prints nothing twice. Into a pipe or a file, stdout gets the final text once,
  when the job ends, so no retry can leave half an attempt in it.
- extract: the resulting JSON on stdout. embed: ``N vectors of D dimensions`` (the
  vectors themselves never travel unless ``--output`` asks for them).
- stderr: the job's state, progress and retries (see ``progress.StatusLine``).
- ``--json``: every event as one JSON line on stdout, nothing else.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO

from aijobs.cli.progress import StatusLine
from aijobs.client import Client, JobEvent, TextReset, TextState


@dataclass
class Outcome:
    """How a followed job ended, as far as its events told."""

    status: str | None = None
    result: Mapping[str, Any] | None = None
    error: dict[str, Any] | None = None
    text: TextState = field(default_factory=TextState)


class LiveText:
    """Generated text streamed to a terminal, restarts marked."""

    def __init__(self, out: TextIO, status: StatusLine) -> None:
        self._out = out
        self._status = status
        self._shown = ""
        self._mid_line = False
        status.before_note = self.end_line

    def write(self, piece: str) -> None:
        """Show a piece of text."""
        if not piece:
            return
        if not self._shown:
            self._status.pause()  # the text takes the screen from here on
        self._out.write(piece)
        self._out.flush()
        self._shown += piece
        self._mid_line = not piece.endswith("\n")

    def reset(self, reset: TextReset) -> None:
        """The text is now ``reset.text``: go on if it extends what is shown, else mark
        the restart and show it from the start."""
        if reset.text.startswith(self._shown):
            self.write(reset.text[len(self._shown) :])
            return
        what = f"repair round {reset.round}" if reset.round else f"attempt {reset.attempt}"
        self._status.note(f"[{what}: the text starts over]")
        self._shown = ""
        self.write(reset.text)

    def end_line(self) -> None:
        """End a partial line of text (before a note, and at the end)."""
        if self._mid_line:
            self._out.write("\n")
            self._out.flush()
            self._mid_line = False

    @property
    def shown(self) -> str:
        """What is on the screen of the current attempt."""
        return self._shown


class _ReconnectNotes(logging.Handler):
    """Says on the status line when the client lost the stream and reconnects (the client
    logs each reconnect with its cursor); once per drop, not once per try."""

    def __init__(self, status: StatusLine) -> None:
        super().__init__(logging.INFO)
        self._status = status
        self._noted_after: int | None = None

    def emit(self, record: logging.LogRecord) -> None:
        after = getattr(record, "reconnect_after", None)
        if after is None or after == self._noted_after:
            return
        self._noted_after = after
        self._status.transient(f"connection lost after event {after}; reconnecting")


@contextmanager
def _reconnects_shown(status: StatusLine) -> Iterator[None]:
    logger = logging.getLogger("aijobs.client")
    handler = _ReconnectNotes(status)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def describe_status(data: dict[str, Any]) -> str:
    """A ``status`` event in a few words."""
    status = str(data.get("status", ""))
    attempt = data.get("attempt")
    if status == "running":
        return f"running (attempt {attempt})" if attempt else "running"
    if status == "queued" and data.get("reason"):
        return f"queued ({data['reason']}, {data.get('wait_s', '?')}s)"
    return status


def follow_job(
    client: Client,
    job_id: str,
    kind: str,
    *,
    out: TextIO,
    err: TextIO,
    out_tty: bool,
    err_tty: bool,
    after: int = 0,
    json_lines: bool = False,
) -> Outcome:
    """Follow a job to its end, showing it; how it ended."""
    if json_lines:
        return _follow_json(client, job_id, after, out)
    status = StatusLine(err, tty=err_tty)
    live = LiveText(out, status) if kind == "generate" and out_tty else None
    outcome = Outcome()
    received = 0
    try:
        with _reconnects_shown(status):
            for event in client.events(job_id, after=after):
                piece = outcome.text.feed(event)
                if isinstance(piece, TextReset):
                    if live is not None:
                        live.reset(piece)
                    else:
                        _note_reset(status, piece)
                elif piece is not None:
                    received += len(piece)
                    if live is not None:
                        live.write(piece)
                    else:
                        status.detail(f"{received:,} characters")
                else:
                    _show_event(event, status, outcome)
            if live is not None:
                live.end_line()
    finally:
        status.close()
    return outcome


def _note_reset(status: StatusLine, reset: TextReset) -> None:
    if reset.round:
        status.note(f"[repair round {reset.round} starts]")
    elif reset.attempt and reset.attempt > 1:
        status.note(f"[attempt {reset.attempt} starts]")


def _show_event(event: JobEvent, status: StatusLine, outcome: Outcome) -> None:
    data = event.data
    if event.event == "status":
        if data.get("status") == "retrying":
            status.note(f"[retrying in {data.get('wait_s')}s: {data.get('reason')}]")
        status.state(describe_status(data))
    elif event.event == "progress":
        status.progress(int(data["done"]), int(data["total"]))
    elif event.event == "result":
        outcome.result = data
    elif event.event == "error":
        outcome.error = data
        status.note(f"failed: {data.get('code')}: {data.get('message')}")
    elif event.event == "done":
        outcome.status = str(data["status"])


def _follow_json(client: Client, job_id: str, after: int, out: TextIO) -> Outcome:
    outcome = Outcome()
    for event in client.events(job_id, after=after):
        line = {"id": event.id, "event": event.event, "data": event.data}
        out.write(json.dumps(line, ensure_ascii=False) + "\n")
        out.flush()
        outcome.text.feed(event)
        if event.event == "result":
            outcome.result = event.data
        elif event.event == "error":
            outcome.error = event.data
        elif event.event == "done":
            outcome.status = str(event.data["status"])
    return outcome
