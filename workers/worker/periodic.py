"""A background thread that does one thing every few seconds, and survives its failures."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Periodic:
    """Calls ``action`` every ``interval_s`` from a daemon thread until ``stop``.

    An ``expected`` error (Redis or the database blinking) is logged as a warning and the
    next round tries again; anything else is logged with its traceback — a bug in one
    round must not kill the loop.
    """

    def __init__(
        self,
        name: str,
        interval_s: float,
        action: Callable[[], object],
        *,
        expected: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.name = name
        self.interval_s = interval_s
        self._action = action
        self._expected = expected
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the loop (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the loop and wait for the round in progress."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
            self._thread = None

    def _run(self) -> None:
        while not self._stopping.wait(self.interval_s):
            try:
                self._action()
            except self._expected as exc:
                log.warning("%s: %s", self.name, exc)
            except Exception:
                log.exception("%s crashed in one round", self.name)
