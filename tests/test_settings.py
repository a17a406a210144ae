"""Settings refuse what cannot work."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from aijobs.settings import Settings, SettingsError


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


def test_settings_refuse_placeholder_secrets() -> None:
    with pytest.raises(ValidationError, match="placeholder"):
        Settings(openai_api_key="CHANGE-ME-provider-key")
    with pytest.raises(ValidationError, match="placeholder"):
        Settings(redis_url="redis://aijobs:CHANGE-ME@redis:6379/0")
    with pytest.raises(ValidationError, match="at least 32"):
        Settings(token_secret="short")
