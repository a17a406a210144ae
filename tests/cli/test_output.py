"""What the CLI prints: --version, help without markup and without heavy imports, --json
for scripts, show without vectors, and the text of a job that was retried mid-stream."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import uuid
from typing import Any

import httpx
import pytest

from aijobs import __version__
from aijobs.cli.main import build_parser
from aijobs.client import Client
from tests.cli.runner import aijobs, aijobs_on_a_terminal
from tests.conftest import KEY_A

pytestmark = pytest.mark.usefixtures("worker")


def every_parser(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                found += every_parser(child)
    return found


def test_version() -> None:
    done = subprocess.run([sys.executable, "-P", "-m", "aijobs.cli", "--version"],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert (done.returncode, done.stdout) == (0, f"aijobs {__version__}\n")


def test_help_has_no_markup_and_documents_the_exit_codes() -> None:
    parsers = every_parser(build_parser())
    assert len(parsers) > 15
    for parser in parsers:
        text = parser.format_help()
        assert "``" not in text, parser.prog
        assert ":class:" not in text and ":func:" not in text, parser.prog
    assert "3 the API refused or could not be reached" in build_parser().format_help()


HELP_PROBE = """
import sys
from aijobs.cli.main import main
for argv in (["--help"], ["submit", "embed", "--help"], ["worker", "--help"]):
    try:
        main(argv)
    except SystemExit:
        pass
heavy = ("httpx", "pydantic", "celery", "redis", "sqlalchemy", "fastapi", "openai", "uvicorn")
print(sorted({m.split(".")[0] for m in sys.modules} & set(heavy)))
"""


def test_help_imports_nothing_heavy() -> None:
    done = subprocess.run([sys.executable, "-P", "-c", HELP_PROBE], capture_output=True,
                          text=True, timeout=60, check=True)  # fmt: skip
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_json_output_of_submit_jobs_show_cancel_and_follow(api_url: str) -> None:
    submitted = aijobs(api_url, "submit", "generate", "--model", "m", "[[echo]] as json",
                       "--json")  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    job = json.loads(submitted.stdout)
    assert job["status"] == "queued" and job["kind"] == "generate"
    followed = aijobs(api_url, "follow", job["id"], "--json")
    events = [json.loads(line) for line in followed.stdout.splitlines()]
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1] == {"id": len(events), "event": "done", "data": {"status": "succeeded"}}
    assert followed.returncode == 0
    shown = json.loads(aijobs(api_url, "show", job["id"], "--json").stdout)
    assert shown["result"]["text"] == "as json"
    listing = json.loads(aijobs(api_url, "jobs", "--json", "--limit", "3").stdout)
    assert set(listing) == {"data", "next_cursor"}
    assert job["id"] in {j["id"] for j in listing["data"]}
    everything = json.loads(aijobs(api_url, "jobs", "--json", "--all", "--limit", "2").stdout)
    assert everything["next_cursor"] is None and len(everything["data"]) >= len(listing["data"])
    cancelled = json.loads(aijobs(api_url, "cancel", job["id"], "--json").stdout)
    assert cancelled["job"]["id"] == job["id"] and "already finished" in cancelled["detail"]
    # submit --follow --json: the job, then its events, one JSON document a line.
    both = aijobs(api_url, "submit", "generate", "--model", "m", "[[echo]] x", "--follow",
                  "--json")  # fmt: skip
    lines = [json.loads(line) for line in both.stdout.splitlines()]
    assert lines[0]["status"] == "queued" and lines[-1]["event"] == "done"
    assert both.stderr == ""


def test_show_leaves_vectors_out_unless_asked(api_url: str) -> None:
    with Client(api_url, KEY_A) as client:
        job = client.embed("e", ["a", "b"], dimensions=4)
        client.wait(job.id)
    shown = aijobs(api_url, "show", job.id)
    assert shown.returncode == 0
    assert "2 vectors of 4 dimensions (--vectors to show them)" in shown.stdout
    assert "status    succeeded" in shown.stdout
    plain = json.loads(aijobs(api_url, "show", job.id, "--json").stdout)
    assert "embeddings" not in plain["result"] and plain["result"]["dimensions"] == 4
    full = json.loads(aijobs(api_url, "show", job.id, "--json", "--vectors").stdout)
    assert len(full["result"]["embeddings"]) == 2
    assert len(full["result"]["embeddings"][0]) == 4


def test_show_of_a_failed_job_names_its_error(api_url: str, simulator: Any) -> None:
    model = f"m-{uuid.uuid4().hex[:6]}"
    fault = {"kind": "bad_request", "model": model, "message": "no such thing"}
    httpx.post(f"{simulator.base_url}/_sim/faults", json={"faults": [fault]}).raise_for_status()
    with Client(api_url, KEY_A) as client:
        job = client.generate(model, "x")
        client.wait(job.id)
    shown = aijobs(api_url, "show", job.id).stdout
    assert "status    failed" in shown and "error     bad_request: no such thing" in shown


def cut_first_attempt(simulator: Any, model: str) -> None:
    fault = {"kind": "cut", "model": model, "after_chunks": 6}
    httpx.post(f"{simulator.base_url}/_sim/faults", json={"faults": [fault]}).raise_for_status()


def test_a_retried_generation_prints_its_final_text_once_into_a_pipe(
    api_url: str, simulator: Any
) -> None:
    model = f"cut-{uuid.uuid4().hex[:6]}"
    cut_first_attempt(simulator, model)
    done = aijobs(api_url, "submit", "generate", "--model", model, "a story", "--max-tokens",
                  "30", "--follow")  # fmt: skip
    assert done.returncode == 0, done.stderr
    with Client(api_url, KEY_A) as client:
        job_id = done.stderr.splitlines()[0].removeprefix("job ")
        final = client.get(job_id)
    assert final.attempts == 2
    assert done.stdout == final.result["text"] + "\n"  # type: ignore[index]
    assert "retrying in" in done.stderr and "[attempt 2 starts]" in done.stderr
    assert "\r" not in done.stderr


def test_a_retried_generation_says_so_on_a_terminal(api_url: str, simulator: Any) -> None:
    model = f"cut-{uuid.uuid4().hex[:6]}"
    cut_first_attempt(simulator, model)
    run = aijobs_on_a_terminal(api_url, "submit", "generate", "--model", model, "a story",
                               "--max-tokens", "30", "--follow")  # fmt: skip
    assert run.returncode == 0, run.screen
    with Client(api_url, KEY_A) as client:
        job = next(j for j in client.iter_jobs(kind="generate") if j.model == model)
    assert job.attempts == 2
    text = job.result["text"]  # type: ignore[index]
    marker = "[attempt 2: the text starts over]"
    assert marker in run.screen
    after = run.screen.split(marker, 1)[1].replace("\r\n", "\n")
    assert after.lstrip("\n").startswith(text)  # the new attempt, from its start


def test_follow_through_a_cut_stream_says_so_and_prints_the_text_once(
    api_url: str, simulator: Any
) -> None:
    from tests.client.httpproxy import CutAfter, HttpProxy

    slow = {"tokens_per_second": 200}
    httpx.put(f"{simulator.base_url}/_sim/config", json=slow).raise_for_status()
    with Client(api_url, KEY_A) as client:
        job = client.generate("m", "a story", max_tokens=60)
    with HttpProxy.before(api_url) as proxy:
        proxy.plan("GET", f"/v1/jobs/{job.id}/events", CutAfter(500), CutAfter(900))
        done = aijobs(proxy.url, "follow", job.id)
    assert done.returncode == 0, done.stderr
    with Client(api_url, KEY_A) as client:
        text = client.get(job.id).result["text"]  # type: ignore[index]
    assert done.stdout == text + "\n"
    notes = [line for line in done.stderr.splitlines() if line.startswith("connection lost")]
    assert len(notes) == 2 and all(n.endswith("; reconnecting") for n in notes)
