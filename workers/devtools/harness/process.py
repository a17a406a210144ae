"""Child processes of a test or benchmark: spawned in their own process group, logged to a
file, and stopped by PID (group) so nothing outlives the run."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


class HarnessError(RuntimeError):
    """Raised when a child exits early, a wait runs past its deadline, or a start fails."""


def aijobs_argv(*args: str) -> list[str]:
    """``python -P -m aijobs.cli ARGS``: this interpreter, never a module from the cwd."""
    return [sys.executable, "-P", "-m", "aijobs.cli", *args]


@dataclass
class Child:
    """A process we started: its Popen, a name for messages, and its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        """Its PID, which is also its process group id."""
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        """Its exit code, or None while it runs."""
        return self.process.poll()

    def alive(self) -> bool:
        """True while it has not exited."""
        return self.process.poll() is None

    def log_tail(self, lines: int = 25) -> str:
        """The last ``lines`` lines of its log (empty if there is none yet)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def describe_exit(self) -> str:
        """The child's name, exit code and log tail, for an error message."""
        return f"{self.name} exited ({self.returncode}); log {self.log_path}:\n{self.log_tail()}"

    def send_signal(self, sig: int) -> None:
        """Signal the process itself (not its group): e.g. a warm SIGTERM to a worker."""
        if self.alive():
            self.process.send_signal(sig)

    def signal_group(self, sig: int) -> None:
        """Signal every process of its group (the child and whatever it forked)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def wait(self, timeout_s: float | None = None) -> int:
        """Wait for it to exit; returns its exit code (``subprocess.TimeoutExpired`` if not)."""
        return self.process.wait(timeout_s)

    def kill(self) -> None:
        """SIGKILL its whole group at once (a crash, mid-whatever) and reap it."""
        self.signal_group(signal.SIGKILL)
        self.process.wait()

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM (a warm shutdown) and wait, then SIGKILL whatever of its group is left.

        The final SIGKILL runs even when the leader exited by itself: a pool child that
        outlived it would otherwise be left behind.
        """
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout_s)
        self.kill()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    env: dict[str, str],
    log_dir: Path,
    cwd: Path | None = None,
    pipe_stdin: bool = False,
    pipe_stdout: bool = False,
) -> Child:
    """Start ``argv`` in its own session (so its own process group), output to ``NAME.log``.

    With ``pipe_stdout`` the child's stdout is a pipe for the caller (a line protocol) and
    only stderr goes to the log.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            list(argv),
            env=env,
            cwd=str(cwd) if cwd else None,
            stdin=subprocess.PIPE if pipe_stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipe_stdout else log,
            stderr=log if pipe_stdout else subprocess.STDOUT,
            # Its own group: Ctrl-C reaches only the parent, and stop() reaches all of it.
            start_new_session=True,
        )
    return Child(name, process, log_path)


class LinePipe:
    """A line protocol with a child spawned with ``pipe_stdin`` and ``pipe_stdout``.

    Its stdout is read by a daemon thread, so waiting for a word has a deadline and notices
    the child's death instead of blocking on a pipe.
    """

    def __init__(self, child: Child) -> None:
        if child.process.stdout is None or child.process.stdin is None:
            raise HarnessError(f"{child.name} was not spawned with pipes")
        self.child = child
        self.lines: queue.Queue[str] = queue.Queue()
        stdout = child.process.stdout

        def pump() -> None:
            for raw in stdout:
                self.lines.put(raw.decode(errors="replace").strip())

        threading.Thread(target=pump, name=f"lines-{child.name}", daemon=True).start()

    def expect(self, word: str, timeout_s: float) -> str:
        """The next line whose first word is ``word`` (other lines are skipped)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if not self.child.alive() and self.lines.empty():
                    raise HarnessError(f"before {word}: {self.child.describe_exit()}") from None
                if time.monotonic() > deadline:
                    raise HarnessError(
                        f"no {word} from {self.child.name} within {timeout_s:g}s"
                    ) from None
                continue
            if line.split(" ", 1)[0] == word:
                return line

    def send(self, line: str) -> None:
        """Write one line to the child's stdin."""
        stdin = self.child.process.stdin
        assert stdin is not None  # checked in __init__
        stdin.write(line.encode() + b"\n")
        stdin.flush()
