"""Pure pieces: duration parsing, backoff, the live message format, settings checks, outcomes."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import redis
from pydantic import ValidationError
from sqlalchemy import inspect

from aijobs.devtools.redis_server import bundled_redis_server, start_redis
from aijobs.events.follow import StoredOutcome
from aijobs.events.protocol import Event, live_message, parse_live_message
from aijobs.providers.errors import parse_duration_s, retry_after_s
from aijobs.settings import Settings, SettingsError
from aijobs.store.db import make_engine
from aijobs.store.models import Base
from aijobs.worker.retry import compute_backoff_s


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


def test_backoff_is_full_jitter_under_a_growing_cap_and_honours_hints() -> None:
    rng = random.Random(7)
    for attempt in range(1, 8):
        ceiling = min(60.0, 1.0 * 2 ** (attempt - 1))
        draws = [compute_backoff_s(attempt, base_s=1, cap_s=60, rng=rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in draws)
        assert max(draws) > ceiling * 0.8
    hinted = compute_backoff_s(3, base_s=1, cap_s=60, hint_s=2.0, rng=rng)
    assert 2.0 <= hinted <= 2.2


def test_live_message_round_trip_keeps_data_verbatim() -> None:
    data = '{"text":"a \\"quoted\\" }","attempt":2}'
    message = live_message(17, "delta", 2, data)
    assert message == '{"id":17,"event":"delta","attempt":2,"data":' + data + "}"
    assert parse_live_message(message) == Event(17, "delta", data, 2)
    assert Event(17, "delta", data).json() == {
        "id": 17, "event": "delta", "data": {"text": 'a "quoted" }', "attempt": 2}
    }  # fmt: skip
    with pytest.raises(ValueError):
        parse_live_message("hello")


def test_stored_outcome_events_end_at_the_recorded_id() -> None:
    outcome = StoredOutcome("succeeded", {"text": "hi"}, None, last_event_id=40)
    assert [(e.id, e.event) for e in outcome.events(after=0)] == [(39, "result"), (40, "done")]
    assert [e.id for e in outcome.events(after=39)] == [40]
    assert outcome.events(after=40) == []
    unknown = StoredOutcome("failed", None, {"code": "x"}, last_event_id=None)
    assert [(e.id, e.event) for e in unknown.events(after=7)] == [(8, "error"), (9, "done")]


def test_settings_refuse_limits_that_outlive_the_visibility_timeout() -> None:
    with pytest.raises(ValidationError, match="VISIBILITY_TIMEOUT"):
        Settings(visibility_timeout_s=3000, task_time_limit_s=3000)
    with pytest.raises(ValidationError, match="PROVIDER_TIMEOUT"):
        Settings(provider_timeout_s=4000, task_time_limit_s=3600)


def test_settings_parse_api_keys_and_require_redis() -> None:
    settings = Settings(api_keys="a:k1, b:k2", redis_url=None)
    assert settings.tenant_by_key == {"k1": "a", "k2": "b"}
    with pytest.raises(SettingsError, match="REDIS_URL"):
        settings.require_redis_url()
    with pytest.raises(SettingsError, match="tenant:key"):
        _ = Settings(api_keys="nocolon").tenant_by_key


def test_migrations_match_the_models(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        for table in ("jobs", "embedding_batches", "api_keys"):
            columns = {c["name"] for c in inspect(engine).get_columns(table)}
            assert columns == {c.name for c in Base.metadata.tables[table].columns}
        from alembic.autogenerate import compare_metadata
        from alembic.runtime.migration import MigrationContext

        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
    finally:
        engine.dispose()


def test_the_bundled_redis_server_runs_where_no_redis_is_installed(tmp_path: Path) -> None:
    # What `aijobs dev` and the tests fall back to on a machine with only Python.
    server = start_redis(tmp_path, binary=bundled_redis_server())
    try:
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        assert client.info("server")["redis_version"].startswith("6.")
        client.close()
    finally:
        server.stop()


def test_settings_refuse_placeholder_secrets() -> None:
    with pytest.raises(ValidationError, match="placeholder"):
        Settings(openai_api_key="CHANGE-ME-provider-key")
    with pytest.raises(ValidationError, match="placeholder"):
        Settings(redis_url="redis://aijobs:CHANGE-ME@redis:6379/0")
    with pytest.raises(ValidationError, match="at least 32"):
        Settings(token_secret="short")
