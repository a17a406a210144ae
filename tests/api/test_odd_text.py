"""Characters that naive line splitting takes for line ends (U+2028, U+2029, U+0085) and
other non-ASCII text, through the whole path: provider SSE -> worker -> Redis -> API SSE
-> the Python client and `aijobs follow`."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import httpx
import pytest

from aijobs.client import Client
from tests.conftest import KEY_A
from tests.support import clean_env, read_events, text_of

pytestmark = pytest.mark.usefixtures("worker")

ODD = ("\u2028", "\u2029", "\u0085")


def odd_text_everywhere(simulator: Any) -> None:
    config = {"chaos": {"seed": 3, "odd_text": 1.0}}
    httpx.put(f"{simulator.base_url}/_sim/config", json=config).raise_for_status()


def test_line_separators_in_the_text_travel_as_text(
    client: httpx.Client, api_url: str, simulator: Any, settings: Any
) -> None:
    odd_text_everywhere(simulator)
    body = {"kind": "generate", "model": "odd", "max_tokens": 40,
            "messages": [{"role": "user", "content": "say something odd"}]}  # fmt: skip
    job = client.post("/v1/jobs", json=body).json()
    events = read_events(client, job["id"], timeout_s=60)
    row = client.get(f"/v1/jobs/{job['id']}").json()
    assert row["status"] == "succeeded", row["error"]
    text = row["result"]["text"]
    assert all(ch in text for ch in ODD), repr(text)
    assert any(ord(ch) > 0xFFFF for ch in text)  # and beyond the BMP (emoji)
    assert text_of(events) == text
    with Client(api_url, KEY_A) as sdk:
        assert text_of(list(sdk.events(job["id"]))) == text
    follow = subprocess.run(
        [sys.executable, "-P", "-m", "aijobs.cli", "follow", job["id"]],
        env=clean_env(AIJOBS_URL=api_url, AIJOBS_API_KEY=KEY_A, PYTHONIOENCODING="utf-8"),
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert follow.returncode == 0, follow.stderr
    assert follow.stdout.decode().rstrip("\n") == text
