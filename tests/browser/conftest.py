"""A real browser for the console: Debian's headless Chromium driven by Playwright.

Playwright never downloads a browser here: it launches /usr/bin/chromium (`.ci/run`
installs it with apt). On a developer's machine without it the tests are skipped with
that advice (the README's test command must work with nothing but Python); in CI
(``AIJOBS_REQUIRE_BROWSER=1``, set by `.ci/run`) a missing browser fails them, so CI can
never pass them by accident.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, ConsoleMessage, Playwright, sync_playwright

from aijobs.devtools.redis_server import free_port
from aijobs.settings import Settings
from tests.browser.proxy import TcpProxy
from tests.support import ApiProcess, clean_env

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Signs event tokens in the API process the tests restart: the same secret on both sides
#: of a restart is what lets a browser's token outlive the process that issued it.
TOKEN_SECRET = "browser-tests-token-secret-0123456789abcdef"


# Package scope, not session: Playwright's sync API keeps an event loop running on this
# thread while it is open, and every later test calling asyncio.run() would fail.
@pytest.fixture(scope="package")
def playwright_driver() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        advice = (
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium; "
            ".ci/run does this). The browser tests never download a browser."
        )
        if os.environ.get("AIJOBS_REQUIRE_BROWSER") == "1":
            pytest.fail(advice)
        pytest.skip(advice)
    with sync_playwright() as driver:
        yield driver


def _policy_violation(message: ConsoleMessage) -> bool:
    text = message.text
    return "Content Security Policy" in text or "Trusted" in text


@pytest.fixture
def browser_problems() -> list[str]:
    """CSP violations and uncaught errors the browser reported; the test fails on any left."""
    return []


@pytest.fixture
def browser(
    playwright_driver: Playwright, tmp_path: Path, browser_problems: list[str]
) -> Iterator[BrowserContext]:
    """A fresh Chromium profile; the test fails if a page breaks the CSP or throws."""
    context = playwright_driver.chromium.launch_persistent_context(
        tmp_path / "profile",
        executable_path=str(CHROMIUM),
        headless=True,
        args=CHROMIUM_ARGS,
        accept_downloads=True,
        viewport={"width": 1280, "height": 900},
    )
    context.set_default_timeout(30_000)
    problems = browser_problems
    context.on("weberror", lambda error: problems.append(f"uncaught: {error.error}"))
    context.on(
        "console",
        lambda message: problems.append(message.text) if _policy_violation(message) else None,
    )
    yield context
    context.close()
    assert not problems, problems


@pytest.fixture
def api_process(settings: Settings) -> Iterator[ApiProcess]:
    """`aijobs api` as its own process, which a test can kill and start again."""
    api = ApiProcess(
        free_port(),
        clean_env(
            REDIS_URL=settings.require_redis_url(),
            DATABASE_URL=settings.database_url,
            AIJOBS_API_KEYS=settings.api_keys.get_secret_value(),
            AIJOBS_TOKEN_SECRET=TOKEN_SECRET,
        ),
    )
    api.start()
    yield api
    api.stop()


@pytest.fixture
def proxy(api_process: ApiProcess) -> Iterator[TcpProxy]:
    """A relay in front of the API process: the browser talks to it, the test cuts it."""
    with TcpProxy(api_process.port) as relay:
        yield relay
