"""The console's job page in a real browser: a live stream that survives a dropped
connection and an API restart, an EventSource closed after ``done``, a read-only link."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, Request

from tests.browser.conftest import screenshot_path, set_pace, sign_in
from tests.browser.proxy import TcpProxy
from tests.conftest import KEY_A
from tests.support import ApiProcess

pytestmark = pytest.mark.usefixtures("worker")

AUTH = {"Authorization": f"Bearer {KEY_A}"}

#: Wraps the page's EventSource so the test sees every instance and whether the page
#: itself closed it (injected before the console's scripts, outside its CSP).
WATCH_EVENT_SOURCES = """
(() => {
  const Native = window.EventSource;
  const made = [];
  class Watched extends Native {
    constructor(url, init) {
      super(url, init);
      this.closedByPage = false;
      made.push(this);
    }
    close() {
      this.closedByPage = true;
      super.close();
    }
  }
  window.EventSource = Watched;
  window.watchedEventSources = made;
})();
"""


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


def submit_generate(page: Page, prompt: str, max_tokens: int) -> str:
    """Submit a generate job through the form; the job page opens. Returns the job id."""
    page.click("#nav a[data-nav=new]")
    page.select_option("#new-kind", "generate")
    page.fill("#new-model", "console-model")
    page.fill("#new-prompt", prompt)
    page.fill("#new-max-tokens", str(max_tokens))
    page.click("#new-submit")
    page.wait_for_selector("#view-job:not([hidden])")
    wait_data(page, "d.streamState === 'live' || d.finished === 'true'")
    return page.inner_text("#job-id").strip()


def get_job(base_url: str, job_id: str) -> dict[str, Any]:
    answer = httpx.get(f"{base_url}/v1/jobs/{job_id}", headers=AUTH, timeout=10)
    answer.raise_for_status()
    job: dict[str, Any] = answer.json()
    return job


def event_requests(requests: list[Request]) -> list[Request]:
    return [r for r in requests if urlsplit(r.url).path.endswith("/events")]


def test_stream_survives_a_dropped_connection_and_an_api_restart(
    browser: BrowserContext,
    api_process: ApiProcess,
    proxy: TcpProxy,
    simulator: Any,
    tmp_path: Path,
) -> None:
    # ~20 s of text: long enough that both breaks land while the job is still running.
    set_pace(simulator, tokens_per_second=10)
    page = browser.new_page()
    requests: list[Request] = []
    page.on("request", lambda request: requests.append(request))
    sign_in(page, proxy.url)
    job_id = submit_generate(page, "tell the console a long story", max_tokens=200)

    wait_data(page, "Number(d.lastEventId) >= 5")
    assert proxy.cut() >= 1  # the network drops every connection mid-stream
    before_cut = int(job_data(page)["lastEventId"])
    # EventSource reconnects by itself (retry: 2000) and picks up after the last id.
    wait_data(page, f"Number(d.opens) >= 2 && Number(d.lastEventId) > {before_cut + 2}")

    assert get_job(api_process.url, job_id)["status"] == "running"
    api_process.kill()  # the API dies mid-stream...
    before_restart = int(job_data(page)["lastEventId"])
    api_process.start()  # ...and comes back on the same port with the same token secret
    wait_data(page, "Number(d.opens) >= 3")
    assert get_job(api_process.url, job_id)["status"] == "running", "the job ended too soon"
    wait_data(page, f"Number(d.lastEventId) > {before_restart}")

    wait_data(page, "d.finished === 'true'", timeout_ms=60_000)
    job = get_job(api_process.url, job_id)
    assert job["status"] == "succeeded"
    data = job_data(page)
    assert page.text_content("#job-text") == job["result"]["text"]
    assert len(job["result"]["text"].split()) == 200
    assert data["anomalies"] == "0"  # no duplicate id, no gap
    assert data["textSource"] == "stream" and data["verified"] == "true"
    assert data["streamState"] == "closed"

    streams = event_requests(requests)
    assert len(streams) >= 3
    # Resumed by the browser itself: the same URL and token, with Last-Event-ID.
    assert len({parse_qs(urlsplit(r.url).query)["token"][0] for r in streams}) == 1
    resumed = [r for r in streams if r.all_headers().get("last-event-id")]
    assert len(resumed) >= 2, [r.all_headers() for r in streams]
    assert page.locator("#job-status .status-succeeded").is_visible()
    assert not page.locator("#job-cancel").is_visible()

    page.wait_for_selector("#job-meta dd")
    shot = screenshot_path(tmp_path, "console-job.png")
    page.screenshot(path=str(shot), full_page=True)
    assert _png_size(shot) >= (1280, 600)


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:33]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and zlib.crc32(head[12:29]) == struct.unpack(
        ">I", head[29:33]
    )[0]
    width, height = struct.unpack(">II", head[16:24])
    return width, height
