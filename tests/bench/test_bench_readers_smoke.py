"""Smoke test of ops/bench/readers.py: tiny numbers, no timing assertions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "ops" / "bench" / "readers.py"


def test_readers_bench_runs_and_prints_the_table(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    argv = [
        sys.executable,
        str(BENCH),
        "--readers", "20",
        "--jobs", "4",
        "--rate", "20",
        "--seconds", "2",
        "--json", str(out),
    ]  # fmt: skip
    proc = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=40, stdin=subprocess.DEVNULL
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for row in ("readers benchmark:", "ours (SSE, 1 API process)",
                "baseline (XREAD BLOCK per reader)", "events / s", "latency p50 / p99 / max (ms)",
                "API CPU", "Redis connections held", "verification ours: 20/20 readers",
                "verification baseline: 20/20 readers"):  # fmt: skip
        assert row in proc.stdout, proc.stdout
    assert "PROBLEM" not in proc.stdout
    report = json.loads(out.read_text())
    phases = {p["name"]: p for p in report["phases"]}
    for name in ("ours", "baseline"):
        phase = phases[name]
        assert phase["readers"] == 20
        assert phase["verified_readers"] == 20
        assert phase["problems"] == []
        assert phase["pieces"] == 20 * 2 * 20  # readers x seconds x rate
    assert phases["ours"]["redis_conns"]["api_named_max"] >= 1
    assert phases["baseline"]["redis_conns"]["xread_named_max"] == 20
