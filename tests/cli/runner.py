"""Running ``aijobs`` as a user would: a process with its output in pipes, or on a
pseudo-terminal (what a person sees, carriage returns and all)."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from dataclasses import dataclass

from tests.conftest import KEY_A
from tests.support import clean_env


def cli_env(api_url: str, key: str = KEY_A, **extra: str) -> dict[str, str]:
    return clean_env(AIJOBS_URL=api_url, AIJOBS_API_KEY=key, PYTHONIOENCODING="utf-8", **extra)


def aijobs(
    api_url: str, *args: str, key: str = KEY_A, stdin: str | None = None, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    """``aijobs ARGS`` with stdout and stderr in pipes."""
    return subprocess.run(
        [sys.executable, "-P", "-m", "aijobs.cli", *args], env=cli_env(api_url, key),
        input=stdin, capture_output=True, text=True, timeout=timeout_s, check=False,
        encoding="utf-8",
    )  # fmt: skip


@dataclass
class TtyRun:
    returncode: int
    screen: str  # everything written to the terminal, stdout and stderr together
    stdout: str  # stdout, when it was a pipe (stderr on the terminal)


def aijobs_on_a_terminal(
    api_url: str, *args: str, stdout_too: bool = True, timeout_s: float = 120
) -> TtyRun:
    """``aijobs ARGS`` with stderr (and stdout, if ``stdout_too``) on a pseudo-terminal."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-P", "-m", "aijobs.cli", *args], env=cli_env(api_url),
        stdin=subprocess.DEVNULL, stdout=slave if stdout_too else subprocess.PIPE,
        stderr=slave,
    )  # fmt: skip
    os.close(slave)
    screen = bytearray()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every writer closed the terminal
                    break
                if not data:
                    break
                screen += data
            elif proc.poll() is not None:
                break
        stdout = proc.stdout.read().decode() if proc.stdout else ""
        returncode = proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
        os.close(master)
    return TtyRun(returncode, screen.decode("utf-8", "replace"), stdout)
