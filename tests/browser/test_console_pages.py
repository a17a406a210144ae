"""The console's pages in a real browser: how it is served, where the key lives, the jobs
list (filters, paging, live updates) and the submit form for the three kinds."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, Request

from aijobs.api.routes.console import CONTENT_SECURITY_POLICY
from tests.browser.console import (
    get_job,
    open_form,
    set_pace,
    sign_in,
    submit_form,
    submit_generate,
    wait_data,
)
from tests.conftest import KEY_A, KEY_C
from tests.support import wait_for

pytestmark = pytest.mark.usefixtures("worker")

ASSETS = ("app.js", "api.js", "dom.js", "job.js", "jobs.js", "stream.js", "submit.js",
          "style.css", "icon.svg")  # fmt: skip


def test_the_console_is_served_under_a_strict_policy(api_url: str) -> None:
    page = httpx.get(f"{api_url}/console")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    policy = page.headers["content-security-policy"]
    assert policy == CONTENT_SECURITY_POLICY
    for directive in ("default-src 'self'", "connect-src 'self'", "object-src 'none'",
                      "base-uri 'none'", "frame-ancestors 'none'"):  # fmt: skip
        assert directive in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-cache"
    # No inline script, handler or style: everything comes from files of this origin.
    html = page.text
    assert re.findall(r"<script\b[^>]*>", html) == ['<script type="module" src="/console/app.js">']
    assert not re.search(r"<style\b|\sstyle=|\son[a-z]+=|javascript:|https?://", html)

    for name in ASSETS:
        asset = httpx.get(f"{api_url}/console/{name}")
        assert asset.status_code == 200, name
        assert asset.headers["content-security-policy"] == policy
        etag = asset.headers["etag"]
        again = httpx.get(f"{api_url}/console/{name}", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        text = asset.text.replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert not re.search(r"https?://", text), f"{name} must load nothing from elsewhere"
    assert (
        httpx.get(f"{api_url}/console/app.js").headers["content-type"].startswith("text/javascript")
    )
    assert httpx.head(f"{api_url}/console").status_code == 200
    for missing in ("nope.js", "index.html", "..%2Fmain.py", "%2e%2e/routes/console.py"):
        assert httpx.get(f"{api_url}/console/{missing}").status_code == 404, missing
    assert "/console" not in httpx.get(f"{api_url}/openapi.json").json()["paths"]


def test_the_browser_enforces_the_policy_on_the_console(
    browser: BrowserContext, api_url: str, browser_problems: list[str]
) -> None:
    page = browser.new_page()
    page.goto(f"{api_url}/console")
    page.wait_for_selector("#view-signin:not([hidden])")
    blocked = page.evaluate(
        """async () => {
          const seen = [];
          document.addEventListener('securitypolicyviolation',
            (e) => seen.push(e.effectiveDirective));
          let script = 'allowed';
          try {
            document.createElement('script').src = 'http://127.0.0.2:9/elsewhere.js';
          } catch (e) { script = e.name; }
          document.body.append(Object.assign(document.createElement('img'),
            { src: 'http://127.0.0.2:9/pixel.png' }));
          document.body.setAttribute('style', 'color: red');
          let fetched = 'allowed';
          try { await fetch('http://127.0.0.2:9/'); } catch { fetched = 'refused'; }
          let html = 'allowed';
          try { document.body.innerHTML = '<b>x</b>'; } catch (e) { html = e.name; }
          await new Promise((resolve) => setTimeout(resolve, 100));
          return { seen: [...new Set(seen)].sort(), fetched, html, script };
        }"""
    )
    # Trusted Types: no string may become markup or a script URL.
    assert blocked["html"] == "TypeError" and blocked["script"] == "TypeError"
    assert blocked["fetched"] == "refused"
    assert {"connect-src", "img-src", "style-src-attr"} <= set(blocked["seen"]), blocked
    # The fixture's watch saw them too (and would fail any other test on one): clear it.
    assert any("Content Security Policy" in p for p in browser_problems)
    browser_problems.clear()


def test_the_key_lives_in_this_tabs_session_storage_only(
    browser: BrowserContext, api_url: str
) -> None:
    page = browser.new_page()
    requests: list[Request] = []
    page.on("request", lambda request: requests.append(request))
    page.goto(f"{api_url}/console")
    page.fill("#signin-key", "not-a-key-0000")
    page.click("#signin-form button[type=submit]")
    page.wait_for_selector("#signin-error:not([hidden])")
    assert page.text_content("#signin-error") == "The API refused this key."
    assert page.evaluate("() => sessionStorage.length") == 0

    sign_in(page, api_url)
    job_id = submit_generate(page, "[[echo]] nothing to see", max_tokens=4)
    wait_data(page, "d.finished === 'true'")
    page.reload()  # the session survives a reload of the tab...
    wait_data(page, "d.finished === 'true'")
    stored = page.evaluate(
        "() => ({local: localStorage.length, session: {...sessionStorage},"
        " cookie: document.cookie, url: location.href, history: history.length})"
    )
    assert stored["local"] == 0 and stored["cookie"] == ""
    assert stored["session"] == {"aijobs.api_key": KEY_A}
    assert stored["url"] == f"{api_url}/console#job={job_id}"
    assert all(KEY_A not in r.url for r in requests)
    assert all(KEY_A not in (r.all_headers().get("referer") or "") for r in requests)
    # The key goes in the Authorization header of API calls, never on the event stream.
    for request in requests:
        path = urlsplit(request.url).path
        if path.startswith("/v1/") and not path.endswith("/events"):
            assert request.all_headers().get("authorization") in (
                f"Bearer {KEY_A}",
                "Bearer not-a-key-0000",
            ), path
        if path.endswith("/events"):
            assert "authorization" not in request.all_headers()

    other_tab = browser.new_page()  # ...but not into another tab
    other_tab.goto(f"{api_url}/console")
    other_tab.wait_for_selector("#view-signin:not([hidden])")

    page.click("#sign-out")
    page.wait_for_selector("#view-signin:not([hidden])")
    assert page.evaluate("() => sessionStorage.length + localStorage.length") == 0


def _submit(client: httpx.Client, **body: Any) -> dict[str, Any]:
    answer = client.post("/v1/jobs", json=body)
    assert answer.status_code == 202, answer.text
    job: dict[str, Any] = answer.json()
    return job


def _row_ids(page: Page) -> list[str]:
    ids: list[str] = page.eval_on_selector_all(
        "#jobs-body tr", "rows => rows.map(r => r.dataset.jobId)"
    )
    return ids


def _wait_rows(page: Page, expected: list[str]) -> None:
    page.wait_for_function(
        "ids => JSON.stringify([...document.querySelectorAll('#jobs-body tr')]"
        ".map(r => r.dataset.jobId)) === JSON.stringify(ids)",
        arg=expected,
    )


def test_the_jobs_list_filters_pages_and_follows_live(
    browser: BrowserContext, api_url: str, simulator: Any
) -> None:
    with httpx.Client(
        base_url=api_url, headers={"Authorization": f"Bearer {KEY_C}"}, timeout=30
    ) as client:
        made = [
            _submit(client, kind="generate", model="list-model", max_tokens=2,
                    messages=[{"role": "user", "content": f"job {i}"}])
            for i in range(11)
        ] + [_submit(client, kind="embed", model="list-embed", input=["a", "b"])]  # fmt: skip
        for job in made:
            wait_for(lambda job=job: client.get(f"/v1/jobs/{job['id']}?vectors=false").json()
                     ["finished_at"])  # fmt: skip

        def api_ids(**params: Any) -> tuple[list[str], str | None]:
            page = client.get("/v1/jobs", params=params).json()
            return [j["id"] for j in page["data"]], page["next_cursor"]

        page = browser.new_page()
        requests: list[Request] = []
        page.on("request", lambda request: requests.append(request))
        sign_in(page, api_url, key=KEY_C)
        page.select_option("#page-size", "10")
        first, cursor = api_ids(limit=10)
        _wait_rows(page, first)
        assert page.is_disabled("#page-prev") and page.is_enabled("#page-next")
        newest = page.locator(f'#jobs-body tr[data-job-id="{first[0]}"]')
        assert newest.locator("td").nth(2).inner_text() == "embed"
        assert newest.locator("td").nth(3).inner_text() == "list-embed"
        assert newest.locator(".status-succeeded").count() == 1

        page.click("#page-next")
        second, _ = api_ids(limit=10, cursor=cursor)
        _wait_rows(page, second)
        assert page.text_content("#page-number") == "page 2"
        page.click("#page-prev")
        _wait_rows(page, first)

        page.select_option("#filter-kind", "embed")
        page.select_option("#filter-status", "succeeded")
        embeds, _ = api_ids(limit=10, kind="embed", status="succeeded")
        _wait_rows(page, embeds)
        assert made[-1]["id"] in embeds
        page.select_option("#filter-kind", "")
        page.select_option("#filter-status", "")
        _wait_rows(page, first)

        # Live: a job submitted elsewhere shows up and moves to succeeded by itself.
        set_pace(simulator, tokens_per_second=20)
        live = _submit(client, kind="generate", model="list-model", max_tokens=20,
                       messages=[{"role": "user", "content": "live"}])  # fmt: skip
        page.wait_for_selector(f'#jobs-body tr[data-job-id="{live["id"]}"]')
        page.wait_for_selector(f'#jobs-body tr[data-job-id="{live["id"]}"][data-status=succeeded]')
        finished = client.get(f"/v1/jobs/{live['id']}?vectors=false").json()
        row = page.locator(f'#jobs-body tr[data-job-id="{live["id"]}"]')
        page.wait_for_function(
            "([id, total]) => document.querySelector(`#jobs-body tr[data-job-id='${id}'] "
            "td:last-child`).textContent === String(total)",
            arg=[live["id"], finished["usage"]["total_tokens"]],
        )
        assert row.locator("td").nth(7).inner_text() == str(finished["attempts"])

        # A hidden tab stops polling; it refreshes as soon as it is seen again.
        page.evaluate(
            "() => { Object.defineProperty(document, 'visibilityState',"
            " {value: 'hidden', configurable: true});"
            " document.dispatchEvent(new Event('visibilitychange')); }"
        )
        polls = len([r for r in requests if urlsplit(r.url).path == "/v1/jobs"])
        unseen = _submit(client, kind="generate", model="list-model", max_tokens=50,
                         messages=[{"role": "user", "content": "unseen"}])  # fmt: skip
        # ~2.5 s of generation: more than one poll interval (2 s) with the tab hidden.
        wait_for(lambda: client.get(f"/v1/jobs/{unseen['id']}?vectors=false").json()
                 ["finished_at"], interval_s=0.2)  # fmt: skip
        assert len([r for r in requests if urlsplit(r.url).path == "/v1/jobs"]) == polls
        assert page.locator(f'#jobs-body tr[data-job-id="{unseen["id"]}"]').count() == 0
        page.evaluate(
            "() => { Object.defineProperty(document, 'visibilityState',"
            " {value: 'visible', configurable: true});"
            " document.dispatchEvent(new Event('visibilitychange')); }"
        )
        page.wait_for_selector(f'#jobs-body tr[data-job-id="{unseen["id"]}"]')

        page.click(f'#jobs-body tr[data-job-id="{live["id"]}"] a')
        wait_data(page, "d.finished === 'true'")
        assert page.text_content("#job-text") == finished["result"]["text"]


def _form_error(page: Page) -> str:
    # A click on submit clears the last error at once, before its request: wait for the next.
    page.wait_for_selector("#new-error:not([hidden])")
    return page.text_content("#new-error") or ""


def test_the_form_shows_what_the_api_refuses(browser: BrowserContext, api_url: str) -> None:
    page = browser.new_page()
    sign_in(page, api_url)
    open_form(page, "extract")
    page.fill("#new-text", "Invoice from ACME")
    page.fill("#new-schema", '{"type": "object", "properties": {"a": {"oneOf": []}}')
    page.click("#new-submit")
    assert _form_error(page).startswith("schema: not valid JSON")

    page.fill("#new-schema", json.dumps(
        {"type": "object", "properties": {"a": {"oneOf": [{"type": "string"}]}}}
    ))  # fmt: skip
    page.click("#new-submit")
    assert _form_error(page) == (
        "422: schema.properties.a.oneOf: strict mode does not support it (use anyOf)"
    )

    open_form(page, "generate")
    page.fill("#new-model", "m" * 201)
    page.fill("#new-prompt", "hello")
    page.click("#new-submit")
    assert _form_error(page) == "422: model: String should have at most 200 characters"

    open_form(page, "embed")
    page.fill("#new-model", "e")
    page.fill("#new-texts", "\n  \n")
    page.click("#new-submit")
    assert _form_error(page) == "texts: give at least one line"
    assert page.is_visible("#view-new")


def test_extract_and_embed_results_through_the_form(browser: BrowserContext, api_url: str) -> None:
    page = browser.new_page()
    requests: list[Request] = []
    page.on("request", lambda request: requests.append(request))
    sign_in(page, api_url)

    open_form(page, "extract")
    page.fill("#new-text", "Invoice from ACME, total 12.50")
    extract_id = submit_form(page)  # the form's example schema: name and total
    wait_data(page, "d.finished === 'true'")
    job = get_job(api_url, extract_id)
    assert job["status"] == "succeeded"
    assert page.text_content("#job-json") == json.dumps(job["result"]["data"], indent=2)

    open_form(page, "embed")
    page.fill("#new-texts", "alpha\nbeta\n\ngamma")
    page.fill("#new-dimensions", "8")
    embed_id = submit_form(page)
    wait_data(page, "d.finished === 'true'")
    assert page.text_content("#job-vectors") == "3 vectors \N{MULTIPLICATION SIGN} 8 dimensions"
    assert not page.is_visible("#job-output-box")

    def vector_fetches() -> list[str]:
        path = f"/v1/jobs/{embed_id}"
        return [r.url for r in requests
                if urlsplit(r.url).path == path and "vectors=false" not in r.url]  # fmt: skip

    assert vector_fetches() == []  # never loaded unless asked
    with page.expect_download() as download_info:
        page.click("#job-download")
    download = download_info.value
    assert download.suggested_filename == f"{embed_id}-vectors.json"
    body = json.loads(Path(download.path()).read_text(encoding="utf-8"))
    assert body["id"] == embed_id
    assert len(body["result"]["embeddings"]) == 3
    assert {len(v) for v in body["result"]["embeddings"]} == {8}
    assert len(vector_fetches()) == 1
