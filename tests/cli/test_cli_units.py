"""The CLI's pure pieces: the status line in both forms, the text view's restarts, the
.npy header."""

from __future__ import annotations

import io

import numpy as np

from aijobs.cli.follow import LiveText
from aijobs.cli.progress import StatusLine
from aijobs.cli.vectors_file import npy_header, write_vectors
from aijobs.client import Embeddings, TextReset
from tests.support import wait_for


def test_plain_status_lines_never_redraw() -> None:
    out = io.StringIO()
    line = StatusLine(out, tty=False, quiet_line_s=0.05)
    line.state("queued")
    line.state("queued")  # no change, no line
    wait_for(lambda: "still queued" in out.getvalue(), what="a quiet-spell line", timeout_s=5)
    line.detail("12 characters")  # a terminal-only figure
    line.state("running (attempt 1)")
    line.progress(2048, 10000)
    line.note("[retrying in 1s: rate_limited]")
    line.close()
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text and "12 characters" not in text
    lines = text.splitlines()
    assert lines[0] == "queued" and lines[1].startswith("still queued (")
    assert lines[-3:] == ["running (attempt 1)", "embedded 2048/10000 (20%)",
                          "[retrying in 1s: rate_limited]"]  # fmt: skip


def test_terminal_status_line_redraws_in_place_and_clears() -> None:
    out = io.StringIO()
    line = StatusLine(out, tty=True, redraw_s=0.01)
    line.state("queued")
    wait_for(lambda: out.getvalue().count("\r\x1b[K") > 3, what="redraws", timeout_s=5)
    line.progress(5, 10)
    line.note("a note")
    line.close()
    text = out.getvalue()
    assert "[############............] 5/10  50%" in text
    assert "\r\x1b[Ka note\n" in text and text.endswith("\r\x1b[K")


def test_live_text_goes_on_after_a_restore_and_marks_a_restart() -> None:
    out, err = io.StringIO(), io.StringIO()
    status = StatusLine(err, tty=False)
    view = LiveText(out, status)
    view.write("Hello")
    view.reset(TextReset("Hello, wor", attempt=1))  # restored: only the new part shows
    view.write("ld")
    assert out.getvalue() == "Hello, world"
    view.reset(TextReset("", attempt=2))  # a new attempt: a note, then from the start
    view.write("Hi")
    view.end_line()
    status.close()
    assert out.getvalue() == "Hello, world\nHi\n"
    assert err.getvalue() == "[attempt 2: the text starts over]\n"


def test_npy_files_load_in_numpy(tmp_path) -> None:
    header = npy_header(3, 5)
    assert len(header) % 64 == 0 and header.endswith(b"\n")
    values = np.arange(15, dtype="<f4").reshape(3, 5)
    embeddings = Embeddings(3, 5, values.tobytes())
    write_vectors(tmp_path / "v.npy", embeddings, model="e")
    assert np.array_equal(np.load(tmp_path / "v.npy"), values)
    assert write_vectors(tmp_path / "v.json", embeddings, model="e") == "json"
