"""Smoke test of ops/bench/embeddings.py: a few thousand texts, no timing assertions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "ops" / "bench" / "embeddings.py"


def test_embeddings_bench_runs_and_prints_the_table(tmp_path: Path) -> None:
    out = tmp_path / "embeddings.json"
    argv = [sys.executable, str(BENCH), "--texts", "3000", "--sample", "200", "--json", str(out)]
    proc = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for row in ("embeddings benchmark: 3,000 texts, 256 dimensions", "system (API + worker)",
                "direct (SDK, 4 threads)", "texts / s", "provider requests",
                "worker run (started -> finished)", "GET floats", "GET base64",
                "vectors equal direct (sampled)", "ratio system/direct:"):  # fmt: skip
        assert row in proc.stdout, proc.stdout
    assert "PROBLEM" not in proc.stdout
    report = json.loads(out.read_text())
    assert report["batches"] == 2  # 3,000 texts in requests of at most 2,048
    assert report["system"]["status"] == "succeeded"
    assert report["system"]["provider_requests"] == report["direct"]["provider_requests"] == 2
    for check in (report["check_float"], report["check_base64"]):
        assert check["problems"] == []
        assert check["checked"] >= 200
