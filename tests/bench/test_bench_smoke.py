"""Smoke test of ops/bench/streaming.py: tiny numbers, no timing assertions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "ops" / "bench" / "streaming.py"


def test_streaming_bench_runs_and_prints_the_table(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    argv = [
        sys.executable,
        str(BENCH),
        "--jobs", "4",
        "--baseline-jobs", "2",
        "--tokens", "20",
        "--tps", "200",
        "--json", str(out),
    ]  # fmt: skip
    proc = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for row in ("streaming benchmark:", "ours (threads -c4)", "naive (prefork -c2",
                "jobs in flight (max/mean)", "chunks relayed / s", "worker CPU per chunk",
                "mean job time", "ratio ours/naive:"):  # fmt: skip
        assert row in proc.stdout, proc.stdout
    assert "PROBLEM" not in proc.stdout
    report = json.loads(out.read_text())
    phases = {p["name"]: p for p in report["phases"]}
    assert phases["ours"]["verified_jobs"] == 4
    assert phases["naive"]["verified_jobs"] == 2
    assert phases["ours"]["chunks"] == 4 * 20
    assert phases["naive"]["chunks"] == 2 * 20
