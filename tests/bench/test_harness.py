"""The harness itself: environments, waits, process groups, CPU, percentiles and tables."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import psutil
import pytest

from aijobs.devtools.harness import (
    CpuMeter,
    Figure,
    Harness,
    HarnessError,
    LinePipe,
    child_env,
    figures_table,
    max_overlap,
    percentiles,
    wait_for,
    write_json,
)


def python(code: str) -> list[str]:
    return [sys.executable, "-P", "-c", code]


def test_child_env_drops_inherited_settings_and_proxies() -> None:
    base = {"PATH": "/bin", "AIJOBS_LEASE_TTL_S": "99", "HTTPS_PROXY": "http://proxy:3128",
            "http_proxy": "http://proxy:3128"}  # fmt: skip
    env = child_env(redis_url="redis://127.0.0.1:1/0", aijobs={"lease_ttl_s": 2,
                    "AIJOBS_LOG_LEVEL": "INFO"}, extra={"X": "y"}, base=base)  # fmt: skip
    assert env["PATH"] == "/bin" and env["X"] == "y"
    assert env["REDIS_URL"] == "redis://127.0.0.1:1/0"
    assert env["AIJOBS_LEASE_TTL_S"] == "2" and env["AIJOBS_LOG_LEVEL"] == "INFO"
    assert "HTTPS_PROXY" not in env and "http_proxy" not in env
    assert env["NO_PROXY"] == "127.0.0.1,localhost"
    assert "DATABASE_URL" not in env


def test_a_dead_child_fails_the_wait_with_its_log_tail(tmp_path: Path) -> None:
    with Harness(tmp_path) as h:
        child = h.spawn("doomed", python("print('boom-marker'); raise SystemExit(3)"),
                        env=child_env())  # fmt: skip
        with pytest.raises(HarnessError, match=r"(?s)doomed exited \(3\).*boom-marker"):
            wait_for(lambda: False, timeout_s=30, what="nothing", watch=[child])
    with pytest.raises(HarnessError, match=r"timed out after 0\.1s waiting for never"):
        wait_for(lambda: False, timeout_s=0.1, what="never")


def test_close_stops_the_whole_process_group(tmp_path: Path) -> None:
    spawner = ("import subprocess, sys, time\n"
               "kid = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
               "print('KID', kid.pid, flush=True)\n"
               "time.sleep(120)\n")  # fmt: skip
    with Harness(tmp_path) as h:
        parent = h.spawn("parent", python(spawner), env=child_env(), pipe_stdin=True,
                         pipe_stdout=True)  # fmt: skip
        kid = int(LinePipe(parent).expect("KID", 30).split()[1])
        assert psutil.pid_exists(kid)
    assert not parent.alive()

    def gone() -> bool:
        try:
            return psutil.Process(kid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    assert wait_for(gone, timeout_s=10, what="the grandchild to be gone")


def test_cpu_meter_counts_a_busy_child(tmp_path: Path) -> None:
    busy = ("import sys, time\n"
            "sys.stdin.readline()\n"
            "t = time.process_time()\n"
            "while time.process_time() - t < 0.2: pass\n"
            "print('DONE', flush=True)\n"
            "sys.stdin.readline()\n")  # fmt: skip
    with Harness(tmp_path) as h:
        child = h.spawn("busy", python(busy), env=child_env(), pipe_stdin=True, pipe_stdout=True)
        lines = LinePipe(child)
        meter = CpuMeter({"busy": child.pid})
        meter.start()
        lines.send("go")
        lines.expect("DONE", 30)
        used = meter.stop()["busy"]
    assert used.total > 0 and used.user >= 0 and used.system >= 0


def test_percentiles_overlap_and_the_table(tmp_path: Path) -> None:
    p = percentiles(float(v) for v in range(1, 101))
    assert (p.count, p.p50, p.p90, p.p99, p.max) == (100, 50.0, 90.0, 99.0, 100.0)
    assert percentiles([]).count == 0 and math.isnan(percentiles([]).p50)
    assert max_overlap([(0, 2), (1, 3), (2, 4)]) == 2
    rows = [Figure("w", "rate", 300.0, 100.0, "1/s"), Figure("w", "cells", "4/4", "2/2"),
            Figure("w", "alone", 12.5, None, "ms", ".1f")]  # fmt: skip
    table = figures_table(rows).splitlines()
    assert len({len(line) for line in table}) == 1
    assert "x3.0" in table[2] and "12.5" in table[4] and table[4].rstrip(" |").endswith("-")
    out = write_json(tmp_path / "r.json", {"figures": rows, "nan": math.nan, "p": p})
    data = json.loads(out.read_text())
    assert data["nan"] is None and data["p"]["p99"] == 99.0
    assert data["figures"][0]["ratio"] == 3.0
