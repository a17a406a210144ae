"""Waiting with a deadline: on a condition, on a URL; a dead child fails the wait at once."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TypeVar

import httpx

from aijobs.devtools.harness.process import Child, HarnessError

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    *,
    timeout_s: float = 30.0,
    what: str = "a condition",
    interval_s: float = 0.05,
    watch: Iterable[Child] = (),
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that.

    Raises :class:`HarnessError` after ``timeout_s``, or as soon as a child in ``watch``
    has exited (with the tail of its log: the reason is nearly always there).
    """
    watched = list(watch)
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        for child in watched:
            if not child.alive():
                raise HarnessError(f"waiting for {what}: {child.describe_exit()}")
        if time.monotonic() > deadline:
            raise HarnessError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(interval_s)


def url_answers(url: str, *, timeout_s: float = 1.0, ok_below: int = 300) -> bool:
    """True if a GET of ``url`` answers with a status below ``ok_below`` right now."""
    try:
        return httpx.get(url, timeout=timeout_s, trust_env=False).status_code < ok_below
    except httpx.HTTPError:
        return False


def wait_url(
    url: str, *, timeout_s: float = 60.0, watch: Iterable[Child] = (), ok_below: int = 300
) -> None:
    """Wait until ``url`` answers (2xx by default), failing early if a watched child died."""
    wait_for(
        lambda: url_answers(url, ok_below=ok_below),
        timeout_s=timeout_s,
        what=f"{url} to answer",
        interval_s=0.1,
        watch=watch,
    )
