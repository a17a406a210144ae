"""Fixtures: one real simulator (uvicorn in a thread) per module, reset before every test."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from aijobs.devtools.simulator import RunningSimulator, SimulatorConfig, running_simulator

# Fast pacing so streamed tests stay quick; tests that need slower streams PUT /_sim/config.
TEST_CONFIG = SimulatorConfig(tokens_per_second=400.0, max_tokens_default=12)


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    with running_simulator(TEST_CONFIG) as running:
        yield running


@pytest.fixture(scope="module")
def _admin_client(sim: RunningSimulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.base_url, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def _sdk_client(sim: RunningSimulator) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=sim.api_base, api_key="sim", max_retries=0, timeout=10) as c:
        yield c


@pytest.fixture
def admin(_admin_client: httpx.Client) -> httpx.Client:
    """Plain HTTP client on the simulator root; resets state and config first."""
    _admin_client.post("/_sim/reset").raise_for_status()
    _admin_client.put("/_sim/config", json=TEST_CONFIG.as_dict()).raise_for_status()
    return _admin_client


@pytest.fixture
def client(_sdk_client: openai.OpenAI, admin: httpx.Client) -> openai.OpenAI:
    """The real openai SDK client (no retries) on a freshly reset simulator."""
    return _sdk_client


@pytest.fixture
def add_faults(admin: httpx.Client) -> Callable[..., None]:
    def add(*specs: dict[str, Any]) -> None:
        admin.post("/_sim/faults", json={"faults": list(specs)}).raise_for_status()

    return add


def _wait_until(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy or the deadline passes."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        pause.wait(0.02)


@pytest.fixture
def wait_until() -> Callable[..., Any]:
    return _wait_until


@pytest.fixture
def stats(admin: httpx.Client) -> Callable[[], dict[str, Any]]:
    def get() -> dict[str, Any]:
        response = admin.get("/_sim/stats")
        response.raise_for_status()
        return response.json()

    return get


@pytest.fixture
def chaos(admin: httpx.Client) -> Callable[..., None]:
    """Set the chaos section (replacing it, so the draw sequence starts over)."""

    def put(**section: Any) -> None:
        admin.put("/_sim/config", json={"chaos": section}).raise_for_status()

    return put


@pytest.fixture
def sim_requests(admin: httpx.Client) -> Callable[..., list[dict[str, Any]]]:
    """The request log, optionally one key's records only."""

    def get(key: str | None = None) -> list[dict[str, Any]]:
        response = admin.get("/_sim/requests", params={"key": key} if key else None)
        response.raise_for_status()
        return response.json()["requests"]

    return get


@pytest.fixture
def read_stalled_stream(client: openai.OpenAI) -> Callable[[int], list[str]]:
    """Stream a chat completion with a 0.3 s read timeout and return its non-empty SSE lines
    once ``keep_alives`` keep-alive comments arrived (then close it)."""

    def read(keep_alives: int) -> list[str]:
        lines: list[str] = []
        with client.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Tell me about queues."}],
            stream=True,
            timeout=0.3,
        ) as response:
            for line in response.iter_lines():
                if line:
                    lines.append(line)
                if lines.count(": keep-alive") == keep_alives:
                    break
        return lines

    return read
