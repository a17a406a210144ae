"""``aijobs submit embed --follow`` on 10,000 texts: progress, the count and dimensions,
and not one vector on the wire unless ``--output`` asks for them (then .npy or base64
JSON)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from aijobs.client import Client
from tests.cli.runner import aijobs, aijobs_on_a_terminal
from tests.client.httpproxy import HttpProxy
from tests.conftest import KEY_A

pytestmark = pytest.mark.usefixtures("worker")
COUNT, DIMENSIONS = 10_000, 64
#: What 10,000 x 64 vectors weigh in their smallest form (base64 float32): ~3.4 MB.
VECTOR_BYTES = COUNT * DIMENSIONS * 4 * 4 // 3


@pytest.fixture(scope="module")
def texts_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("embed") / "texts.txt"
    # One text a line; a U+2028 inside a line is part of its text, not a line end.
    path.write_text("".join(f"text number {i}\u2028and more\n" for i in range(COUNT)), "utf-8")
    return path


@pytest.fixture
def proxy(api_url: str) -> Iterator[HttpProxy]:
    with HttpProxy.before(api_url) as p:
        yield p


def job_id_of(stderr: str) -> str:
    match = re.search(r"^job ([0-9a-f]{32})$", stderr, re.MULTILINE)
    assert match, stderr
    return match.group(1)


def test_follow_prints_count_and_dimensions_and_no_vector_crosses_the_wire(
    proxy: HttpProxy, texts_file: Path
) -> None:
    done = aijobs(proxy.url, "submit", "embed", "--model", "e", "--dimensions",
                  str(DIMENSIONS), "--file", str(texts_file), "--follow")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{COUNT} vectors of {DIMENSIONS} dimensions\n"
    # Progress into a pipe: plain lines, never a carriage return.
    assert "\r" not in done.stderr and "\x1b" not in done.stderr
    steps = re.findall(r"^embedded (\d+)/10000 \(\d+%\)$", done.stderr, re.MULTILINE)
    assert steps and int(steps[-1]) == COUNT
    assert [int(s) for s in steps] == sorted(int(s) for s in steps)
    # What the API sent: the job, its events, and nothing like the vectors.
    job_id = job_id_of(done.stderr)
    paths = [(s.method, s.target) for s in proxy.seen]
    assert ("POST", "/v1/jobs") in paths
    assert all(not t.startswith(f"/v1/jobs/{job_id}") or t.endswith(("/events", "vectors=false"))
               for _, t in paths), paths  # fmt: skip
    assert proxy.upstream_bytes() < 50_000 < VECTOR_BYTES
    with Client(proxy.url, KEY_A) as client:
        job = client.get(job_id, vectors=False)
    assert job.status == "succeeded" and job.result["count"] == COUNT  # type: ignore[index]


def test_output_writes_npy_or_base64_json(proxy: HttpProxy, texts_file: Path,
                                          tmp_path: Path, api_url: str) -> None:  # fmt: skip
    npy = tmp_path / "vectors.npy"
    done = aijobs(proxy.url, "submit", "embed", "--model", "e", "--dimensions",
                  str(DIMENSIONS), "--file", str(texts_file), "--output", str(npy))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"wrote {COUNT} vectors to {npy} (npy)" in done.stderr
    assert proxy.upstream_bytes() > VECTOR_BYTES  # asked for: now they travel, once
    job_id = job_id_of(done.stderr)
    with Client(api_url, KEY_A) as client:
        exact = client.embeddings(job_id)  # the stored float32 values, bit for bit
        as_floats = client.get(job_id).result["embeddings"]  # type: ignore[index]
    expected = np.frombuffer(exact.float32le, dtype="<f4").reshape(COUNT, DIMENSIONS)
    assert np.allclose(expected, np.asarray(as_floats, dtype="<f4"), rtol=1e-6, atol=1e-7)
    loaded = np.load(npy)
    assert loaded.dtype == np.dtype("<f4") and loaded.shape == (COUNT, DIMENSIONS)
    assert np.array_equal(loaded, expected)
    as_json = tmp_path / "vectors.json"
    again = aijobs(api_url, "follow", job_id, "-o", str(as_json))
    assert again.returncode == 0, again.stderr
    document = json.loads(as_json.read_text())
    assert (document["count"], document["dimensions"]) == (COUNT, DIMENSIONS)
    assert document["model"] == "e" and len(document["embeddings"]) == COUNT
    first = np.frombuffer(base64.b64decode(document["embeddings"][0]), dtype="<f4")
    assert np.array_equal(first, expected[0])
    with Client(api_url, KEY_A) as client:
        text_job = client.generate("m", "x", max_tokens=2)
    refused = aijobs(api_url, "follow", text_job.id, "--output", str(tmp_path / "x.npy"))
    assert refused.returncode == 2 and "--output is for embedding jobs" in refused.stderr


def test_a_terminal_gets_a_progress_bar(api_url: str, texts_file: Path) -> None:
    run = aijobs_on_a_terminal(api_url, "submit", "embed", "--model", "e", "--dimensions",
                               "8", "--file", str(texts_file), "--follow",
                               stdout_too=False)  # fmt: skip
    assert run.returncode == 0, run.screen
    assert run.stdout == f"{COUNT} vectors of 8 dimensions\n"
    frames = run.screen.split("\r\x1b[K")
    assert any(re.search(r"\[#*\.*\] \d+/10000", frame) for frame in frames), run.screen
    assert "embedded " not in run.screen  # the plain lines are for pipes only
