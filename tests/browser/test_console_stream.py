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
from playwright.sync_api import BrowserContext, Request

from tests.browser.console import (
    AUTH,
    get_job,
    job_data,
    screenshot_path,
    set_pace,
    sign_in,
    submit_generate,
    wait_data,
)
from tests.browser.proxy import TcpProxy
from tests.conftest import KEY_A
from tests.support import ApiProcess, wait_for

pytestmark = pytest.mark.usefixtures("worker")

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
    assert (
        head[:8] == b"\x89PNG\r\n\x1a\n"
        and zlib.crc32(head[12:29]) == struct.unpack(">I", head[29:33])[0]
    )
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def test_the_event_source_is_closed_on_done_and_never_reconnects(
    browser: BrowserContext, api_url: str, simulator: Any
) -> None:
    page = browser.new_page()
    page.add_init_script(WATCH_EVENT_SOURCES)
    requests: list[Request] = []
    page.on("request", lambda request: requests.append(request))
    sign_in(page, api_url)
    submit_generate(page, "a short one", max_tokens=8)
    wait_data(page, "d.finished === 'true'")

    sources = page.evaluate(
        "() => watchedEventSources.map(s => ({state: s.readyState, closedByPage: s.closedByPage}))"
    )
    assert sources == [{"state": 2, "closedByPage": True}]  # 2: EventSource.CLOSED
    assert len(event_requests(requests)) == 1
    # Watch longer than the stream's `retry: 2000`: a second job paced to ~3 s runs through
    # the same API meanwhile. An EventSource left open would have reconnected by its end.
    set_pace(simulator, tokens_per_second=10)
    body = {"kind": "generate", "model": "m", "max_tokens": 30,
            "messages": [{"role": "user", "content": "meanwhile"}]}  # fmt: skip
    other = httpx.post(f"{api_url}/v1/jobs", json=body, headers=AUTH, timeout=10).json()
    wait_for(lambda: get_job(api_url, other["id"])["finished_at"], timeout_s=30, interval_s=0.2)
    assert len(event_requests(requests)) == 1
    assert page.evaluate("() => watchedEventSources.length") == 1
    assert job_data(page)["streamState"] == "closed"


def test_a_read_only_link_follows_one_job_without_the_key(
    browser: BrowserContext, api_url: str
) -> None:
    page = browser.new_page()
    sign_in(page, api_url)
    job_id = submit_generate(page, "share this one", max_tokens=40)
    page.click("#job-share")
    page.wait_for_selector("#job-share-link:not([hidden])")
    link = page.get_attribute("#job-share-link", "href")
    assert link and f"#job={job_id}&token=" in link and KEY_A not in link

    # A new tab has its own (empty) sessionStorage: it holds the token, never the key.
    viewer = browser.new_page()
    requests: list[Request] = []
    viewer.on("request", lambda request: requests.append(request))
    viewer.goto(link)
    wait_data(viewer, "d.finished === 'true'")
    job = get_job(api_url, job_id)
    assert viewer.text_content("#job-text") == job["result"]["text"]
    assert viewer.locator("#read-only-badge").is_visible()
    for hidden in ("#nav", "#job-cancel", "#job-share", "#job-meta", "#view-signin"):
        assert not viewer.locator(hidden).is_visible(), hidden
    assert viewer.evaluate("() => sessionStorage.length + localStorage.length") == 0
    api_calls = [r for r in requests if "/v1/" in r.url]
    assert api_calls and all(urlsplit(r.url).path.endswith("/events") for r in api_calls)
    assert not any("authorization" in r.all_headers() for r in api_calls)


def test_a_retry_and_its_reset_show_as_they_happen(
    browser: BrowserContext, api_url: str, simulator: Any
) -> None:
    # The provider cuts the first attempt's stream after 6 chunks: the worker retries and
    # the second attempt opens with a reset, so the page must drop the partial text.
    set_pace(simulator, tokens_per_second=40)
    httpx.post(
        f"{simulator.base_url}/_sim/faults",
        json={"faults": [{"kind": "cut", "after_chunks": 6, "model": "console-model"}]},
    ).raise_for_status()
    page = browser.new_page()
    sign_in(page, api_url)
    job_id = submit_generate(page, "a story that breaks once", max_tokens=30)
    wait_data(page, "d.finished === 'true'")
    job = get_job(api_url, job_id)
    assert job["status"] == "succeeded" and job["attempts"] == 2
    assert page.text_content("#job-text") == job["result"]["text"]
    retrying = page.locator("#job-log li[data-event=status]", has_text="retrying")
    assert retrying.count() == 1 and " next in " in retrying.inner_text()
    assert page.locator("#job-log li[data-event=reset]", has_text="attempt 2").count() == 1
    assert job_data(page)["anomalies"] == "0"


def test_the_protocol_state_handles_resets_with_text_and_repeated_ids(
    browser: BrowserContext, api_url: str
) -> None:
    page = browser.new_page()
    page.goto(f"{api_url}/console")
    outcome = page.evaluate(
        """async () => {
          const { JobState, describeStatus } = await import('/console/stream.js');
          const state = new JobState();
          const events = [
            [1, 'status', {status: 'running', attempt: 1}],
            [2, 'delta', {text: 'Hello', attempt: 1}],
            [3, 'delta', {text: ' wrld', attempt: 1}],
            [3, 'delta', {text: ' wrld', attempt: 1}],
            [4, 'reset', {attempt: 1, round: 1, text: 'Hello'}],
            [5, 'delta', {text: ' world', attempt: 1}],
            [7, 'reset', {attempt: 2}],
            [8, 'delta', {text: 'Hi', attempt: 2}],
            [10, 'delta', {text: '!', attempt: 2}],
          ];
          const applied = events.map(([id, type, data]) => state.apply(id, type, data));
          return {
            applied, text: state.text, duplicates: state.duplicates, gaps: state.gaps,
            afterTextReset: (() => {
              const s = new JobState();
              s.apply(1, 'delta', {text: 'old'});
              s.apply(2, 'reset', {attempt: 1, round: 1, text: 'Hello'});
              s.apply(3, 'delta', {text: ' world'});
              return s.text;
            })(),
            retry: describeStatus(
              {status: 'retrying', attempt: 2, reason: 'server_error', wait_s: 1.5}),
          };
        }"""
    )
    assert outcome["applied"] == [True, True, True, False, True, True, True, True, True]
    assert outcome["text"] == "Hi!"
    assert outcome["afterTextReset"] == "Hello world"
    assert (outcome["duplicates"], outcome["gaps"]) == (1, 1)
    assert outcome["retry"] == "retrying (server_error): attempt 2 next in 1.5 s"


def test_cancel_stops_a_running_job_from_its_page(
    browser: BrowserContext, api_url: str, simulator: Any
) -> None:
    set_pace(simulator, tokens_per_second=10)
    page = browser.new_page()
    sign_in(page, api_url)
    job_id = submit_generate(page, "a story nobody finishes", max_tokens=200)
    wait_data(page, "Number(d.lastEventId) >= 3")
    page.click("#job-cancel")
    wait_data(page, "d.finished === 'true'")
    assert page.text_content("#job-note") == "cancel requested: the job stops at its next chunk"
    job = get_job(api_url, job_id)
    assert job["status"] == "cancelled"
    assert page.locator("#job-status .status-cancelled").is_visible()
    assert not page.locator("#job-cancel").is_visible()
    assert page.locator("#job-log li[data-event=done]").inner_text().endswith("cancelled")
    partial = page.text_content("#job-text") or ""
    assert 0 < len(partial.split()) < 200


def test_a_failed_job_shows_its_error(
    browser: BrowserContext, api_url: str, simulator: Any
) -> None:
    httpx.post(
        f"{simulator.base_url}/_sim/faults",
        json={"faults": [{"kind": "insufficient_quota", "model": "console-model"}]},
    ).raise_for_status()
    page = browser.new_page()
    sign_in(page, api_url)
    job_id = submit_generate(page, "no quota left", max_tokens=10)
    wait_data(page, "d.finished === 'true'")
    job = get_job(api_url, job_id)
    assert job["status"] == "failed"
    shown = page.text_content("#job-error") or ""
    assert shown.startswith(job["error"]["code"]) and job["error"]["message"] in shown
    assert page.locator("#job-status .status-failed").is_visible()
    assert not page.is_visible("#job-result-box")
