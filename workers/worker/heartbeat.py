"""A worker's liveness for container health checks: a file touched every few seconds."""

from __future__ import annotations

import time
from pathlib import Path

from aijobs.worker.periodic import Periodic


class Heartbeat:
    """Touches ``path`` every ``interval_s`` from a daemon thread."""

    def __init__(self, path: str, interval_s: float = 5.0) -> None:
        self.path = Path(path)
        self._loop = Periodic("aijobs-heartbeat", interval_s, self.path.touch, expected=(OSError,))

    def start(self) -> None:
        """Start beating."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch()
        self._loop.start()

    def stop(self) -> None:
        """Stop beating and remove the file (a stopped worker is not alive)."""
        self._loop.stop()
        self.path.unlink(missing_ok=True)


def is_alive(path: str, *, max_age_s: float) -> bool:
    """True if the heartbeat file was touched within ``max_age_s``."""
    try:
        return time.time() - Path(path).stat().st_mtime <= max_age_s
    except OSError:
        return False
