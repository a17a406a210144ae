"""Helpers the console's browser tests share: signing in, submitting, reading the page."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page

from tests.conftest import KEY_A

AUTH = {"Authorization": f"Bearer {KEY_A}"}
REPO = Path(__file__).resolve().parents[2]


def sign_in(page: Page, base_url: str, key: str = KEY_A) -> None:
    """Open the console and sign in with ``key``."""
    page.goto(f"{base_url}/console")
    page.fill("#signin-key", key)
    page.click("#signin-form button[type=submit]")
    page.wait_for_selector("#view-jobs:not([hidden])")


def set_pace(simulator: Any, **config: float) -> None:
    """Change the simulator's config (``tokens_per_second``, ...) for this test."""
    httpx.put(f"{simulator.base_url}/_sim/config", json=config).raise_for_status()


def job_data(page: Page) -> dict[str, str]:
    """The job page's state attributes (``data-*`` of ``#view-job``)."""
    data: dict[str, str] = page.eval_on_selector("#view-job", "node => ({...node.dataset})")
    return data


def wait_data(page: Page, condition: str, timeout_ms: float = 30_000) -> None:
    """Wait until a JS condition over ``d`` (the job page's dataset) holds."""
    page.wait_for_function(
        f"() => {{ const d = document.getElementById('view-job').dataset; return {condition}; }}",
        timeout=timeout_ms,
    )


def open_form(page: Page, kind: str) -> None:
    """Open the submit form on ``kind``."""
    page.click("#nav a[data-nav=new]")
    page.wait_for_selector("#view-new:not([hidden])")
    page.select_option("#new-kind", kind)


def submit_form(page: Page) -> str:
    """Submit the form; the new job's page opens and its stream starts. Returns the id."""
    page.click("#new-submit")
    page.wait_for_selector("#view-job:not([hidden])")
    wait_data(page, "d.streamState === 'live' || d.finished === 'true'")
    return page.inner_text("#job-id").strip()


def submit_generate(page: Page, prompt: str, max_tokens: int) -> str:
    """Submit a generate job through the form. Returns the job id."""
    open_form(page, "generate")
    page.fill("#new-model", "console-model")
    page.fill("#new-prompt", prompt)
    page.fill("#new-max-tokens", str(max_tokens))
    return submit_form(page)


def get_job(base_url: str, job_id: str) -> dict[str, Any]:
    """The job as the API has it (tenant A), with its result."""
    answer = httpx.get(f"{base_url}/v1/jobs/{job_id}", headers=AUTH, timeout=10)
    answer.raise_for_status()
    job: dict[str, Any] = answer.json()
    return job


def screenshot_path(tmp_path: Path, name: str) -> Path:
    """Where a screenshot goes: ops/screenshots/ when AIJOBS_UPDATE_SCREENSHOTS=1 (kept in
    the repo for the README), else the test's temporary folder (a run leaves no diff)."""
    if os.environ.get("AIJOBS_UPDATE_SCREENSHOTS") == "1":
        return REPO / "ops" / "screenshots" / name
    return tmp_path / name
