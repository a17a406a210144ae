"""Smoke test of `python -m ops.bench --smoke`: every workload runs, checks, reports.

Tiny sizes, and no figure is asserted: only that each workload ran to the end, verified
its answers, and that the table, the JSON and the chart came out.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


#: Every workload, and the start of the labels of its rows in the table.
WORKLOADS = {
    "submit": "submit, ", "dispatch": "dispatch ", "catchup": "catch-up ",
    "readers": "readers ", "streaming": "streaming ", "memory": "memory ",
    "embeddings": "embeddings ", "starts": "starts, ",
}  # fmt: skip


@pytest.mark.timeout(420)
def test_one_command_runs_every_workload_beside_its_baseline(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "ops.bench", "--smoke", "--out", str(tmp_path)]
    proc = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=400, stdin=subprocess.DEVNULL
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "| workload " in out and "| ours / baseline |" in out, out
    for row in ("| streaming 8 x2p ", "chunks relayed / s", "worker CPU per chunk",
                "mean job time / ideal", "| readers 20 / 4 jobs, API x2 ", "events delivered / s",
                "| embeddings 3,000 x 256 ", "texts / s, base64 GET", "| submit, 8 clients ",
                "| submit, 1 client ", "jobs / s (POST vs send_task)", "CPU per submit",
                "GET /healthz (reference)", "GET /v1/jobs/{id} (reference)",
                "| dispatch 8 jobs, API x1 ", "| dispatch 8 jobs, API x2 ",
                "POST → running p50 (job record's started_at)", "added time to first token p99",
                "worker CPU per chunk vs limit raw",
                "| catch-up 1,000 events ", "| memory 100 finished jobs ",
                "Redis memory (dataset) per finished job", "archived in SQL",
                "| starts, 8 short jobs ", "worker CPU per job (ours vs Celery + call)",
                "worker CPU per job (ours vs Celery no-op)"):  # fmt: skip
        assert row in out, out
    assert "PROBLEM" not in out
    widths = {len(line) for line in out.splitlines() if line.startswith("|")}
    assert len(widths) == 1, "the table's columns line up"

    report = json.loads((tmp_path / "bench.json").read_text())
    work = report["workloads"]
    assert set(work) == set(WORKLOADS)
    assert all(w["problems"] == [] for w in work.values()), work
    for name, prefix in WORKLOADS.items():
        numbers = [f["ours"] for f in report["figures"] if f["workload"].startswith(prefix)
                   and isinstance(f["ours"], int | float)]  # fmt: skip
        assert numbers, f"{name}: no numeric figure"
    streaming = work["streaming"]["details"]
    assert [(p["streams"], p["processes"], p["verified"]) for p in streaming["ours"]] == [
        (8, 1, 8), (8, 2, 8)
    ]  # fmt: skip
    assert all(p["chunks"] == p["streams"] * 20 for p in streaming["ours"])
    assert streaming["naive"]["verified"] == 2 and streaming["naive"]["chunks"] == 2 * 20

    readers = work["readers"]["details"]
    for phase in (readers["ours"], readers["baseline"]):
        assert phase["verified_readers"] == phase["readers"] == 20
        assert phase["pieces"] == 20 * 1 * 20  # readers x seconds x rate
    assert readers["ours"]["redis_conns"]["api_named_max"] >= 1
    assert readers["baseline"]["redis_conns"]["xread_named_max"] == 20

    embed = work["embeddings"]["details"]
    assert embed["batches"] == 2  # 3,000 texts in requests of at most 2,048
    assert embed["system"]["status"] == "succeeded"
    assert embed["system"]["provider_requests"] == embed["direct"]["provider_requests"] == 2
    assert embed["check_float"]["checked"] >= 200 and embed["check_base64"]["checked"] >= 200

    starts = work["starts"]["details"]
    assert starts["ours"]["verified"] == starts["ours"]["jobs"] == 8
    assert {m: f["jobs"] for m, f in starts["floor"].items()} == {"noop": 8, "call": 8}

    loads = work["submit"]["details"]["loads"]
    assert loads["post_concurrent"]["statuses"] == {"202": 100}
    assert loads["post_sequential"]["statuses"] == {"202": 20}
    assert loads["get_job_concurrent"]["statuses"] == {"200": 100}

    bursts = work["dispatch"]["details"]["bursts"]
    assert [(b["api_processes"], b["verified"]) for b in bursts] == [(1, 8), (2, 8)]
    assert all(b["chunks"] == 8 * 20 for b in bursts)
    limit = work["dispatch"]["details"]["limit"]
    assert limit["raw"]["chunks"] == limit["typed"]["chunks"] == 8 * 20
    assert work["catchup"]["details"]["events"] == 1000
    assert work["memory"]["details"]["jobs"] == 100

    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
