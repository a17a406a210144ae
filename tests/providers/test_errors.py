"""How provider errors and their hints are read."""

from __future__ import annotations

import pytest

from aijobs.providers.errors import parse_duration_s, retry_after_s


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("6m0s", 360.0), ("12ms", 0.012), ("1h2m3.5s", 3723.5), ("0.5", 0.5),
     ("20", 20.0), ("", None), ("soon", None), ("1x", None), ("s1", None)],
)  # fmt: skip
def test_parse_duration(text: str, seconds: float | None) -> None:
    assert parse_duration_s(text) == (None if seconds is None else pytest.approx(seconds))


def test_retry_after_prefers_ms_then_seconds_then_reset_headers() -> None:
    assert retry_after_s({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_s({"retry-after": "2"}) == 2.0
    reset = {"x-ratelimit-reset-requests": "1s", "x-ratelimit-reset-tokens": "6m0s"}
    assert retry_after_s(reset) == 360.0
    assert retry_after_s({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) is None
    assert retry_after_s({}) is None
