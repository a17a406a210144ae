"""One status line on stderr: redrawn in place on a terminal, plain lines anywhere else.

On a terminal a thread redraws the line a few times a second (a spinner and the time
for waits, a bar for an embedding job's progress), so a long wait visibly lives. Into a
pipe or a file it never writes a carriage return: a line when the state changes, one per
progress step, and a "still ..." line after a long quiet spell.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from typing import TextIO

_SPINNER = "|/-\\"
_BAR_WIDTH = 24


def _elapsed(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


class StatusLine:
    """What a followed job is doing, on ``stream``; ``tty`` picks the form.

    ``state()`` says what it is doing, ``detail()`` adds a figure that changes often,
    ``progress()`` how far it got, ``note()`` prints
    a line that stays; ``pause()`` stops the terminal line for good (the job's own text
    is taking the screen); ``close()`` clears it.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        tty: bool,
        redraw_s: float = 0.1,
        quiet_line_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._tty = tty
        self._redraw_s = redraw_s
        self._quiet_line_s = quiet_line_s
        self._clock = clock
        self._lock = threading.Lock()
        self._state = ""
        self._detail = ""
        self._state_since = clock()
        self._last_plain = clock()
        self._progress: tuple[int, int] | None = None
        self._drawn = False
        self._paused = False
        self._frame = 0
        #: Called before a note is printed (the text view ends its partial line).
        self.before_note: Callable[[], None] = lambda: None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, name="aijobs-status", daemon=True)
        self._thread.start()

    def state(self, text: str) -> None:
        """What the job is doing now ("queued", "running (attempt 1)" ...)."""
        with self._lock:
            if text == self._state:
                return
            self._state, self._state_since = text, self._clock()
            self._detail = ""
            if not self._tty:
                self._plain(text)
            else:
                self._draw()

    def detail(self, text: str) -> None:
        """A detail of the state that changes often ("1,234 characters"): shown on a
        terminal only, where it is redrawn in place; a pipe would get a line per change."""
        with self._lock:
            self._detail = text
            if self._tty:
                self._draw()

    def transient(self, text: str) -> None:
        """Something passing (a reconnect): the detail on a terminal, a line elsewhere."""
        with self._lock:
            if self._tty:
                self._detail = text
                self._draw()
            else:
                self._plain(text)

    def progress(self, done: int, total: int) -> None:
        """How far an embedding job got: a bar on a terminal, a line elsewhere."""
        with self._lock:
            self._progress = (done, total)
            if not self._tty:
                percent = 100 * done // max(total, 1)
                self._plain(f"embedded {done}/{total} ({percent}%)")
            else:
                self._draw()

    def note(self, text: str) -> None:
        """A line that stays (a retry, a restart, a failure)."""
        with self._lock:
            self._erase()
            self.before_note()
            self._stream.write(text + "\n")
            self._stream.flush()
            self._last_plain = self._clock()
            if self._tty:
                self._draw()

    def pause(self) -> None:
        """Stop drawing (and clear) the terminal line: other output takes the screen."""
        with self._lock:
            self._erase()
            self._paused = True

    def close(self) -> None:
        """Stop the redraws and clear the line."""
        self._stop.set()
        self._thread.join(1.0)
        with self._lock:
            self._erase()

    # -- drawing, under the lock --------------------------------------------------------

    def _plain(self, text: str) -> None:
        self._stream.write(text + "\n")
        self._stream.flush()
        self._last_plain = self._clock()

    def _line(self) -> str:
        now = self._clock()
        spin = _SPINNER[self._frame % len(_SPINNER)]
        if self._progress is not None:
            done, total = self._progress
            filled = _BAR_WIDTH * done // max(total, 1)
            bar = "#" * filled + "." * (_BAR_WIDTH - filled)
            percent = 100 * done // max(total, 1)
            text = f"{spin} [{bar}] {done}/{total} {percent:3d}%"
        else:
            text = f"{spin} {self._state}" + (f", {self._detail}" if self._detail else "")
        return f"{text}  {_elapsed(now - self._state_since)}"

    def _draw(self) -> None:
        if self._paused or not (self._state or self._progress):
            return
        width = max(20, shutil.get_terminal_size((80, 24)).columns - 1)
        self._stream.write("\r\x1b[K" + self._line()[:width])
        self._stream.flush()
        self._drawn = True

    def _erase(self) -> None:
        if self._tty and self._drawn:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._drawn = False

    def _tick(self) -> None:
        interval = self._redraw_s if self._tty else min(1.0, self._quiet_line_s)
        while not self._stop.wait(interval):
            with self._lock:
                if self._tty:
                    self._frame += 1
                    self._draw()
                elif self._state and self._clock() - self._last_plain >= self._quiet_line_s:
                    waited = _elapsed(self._clock() - self._state_since)
                    self._plain(f"still {self._state} ({waited})")
