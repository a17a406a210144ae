"""Run-time settings of the OpenAI-compatible simulator."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

_ENV_VARS: dict[str, str] = {
    "latency_ms": "AIJOBS_SIM_LATENCY_MS",
    "tokens_per_second": "AIJOBS_SIM_TOKENS_PER_SECOND",
    "max_tokens_default": "AIJOBS_SIM_MAX_TOKENS",
    "rpm_limit": "AIJOBS_SIM_RPM_LIMIT",
    "rpm_window_s": "AIJOBS_SIM_RPM_WINDOW_S",
}


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """Behaviour knobs of the simulator.

    Attributes:
        latency_ms: delay before the first byte of any chat/embeddings answer (for streams:
            before the response headers and the first chunk).
        tokens_per_second: pacing of streamed chunks; ``0`` sends them as fast as possible.
        max_tokens_default: completion length (in word tokens) when the request gives neither
            ``max_tokens`` nor ``max_completion_tokens``.
        rpm_limit: requests admitted per sliding window of ``rpm_window_s`` seconds over the
            chat and embeddings endpoints; ``0`` disables the limiter. Requests past the limit
            get a 429 ``rate_limit_exceeded`` whose retry-after says when a slot frees.
        rpm_window_s: length of the sliding window in seconds.
    """

    latency_ms: float = 0.0
    tokens_per_second: float = 50.0
    max_tokens_default: int = 64
    rpm_limit: int = 0
    rpm_window_s: float = 60.0

    def __post_init__(self) -> None:
        """Coerce numbers to the field types and reject negative or nonsensical values."""
        for f in dataclasses.fields(self):
            kind = int if f.type == "int" else float
            object.__setattr__(self, f.name, _coerce(f.name, getattr(self, f.name), kind))
        if self.latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        if self.tokens_per_second < 0:
            raise ValueError("tokens_per_second must be >= 0")
        if self.max_tokens_default < 1:
            raise ValueError("max_tokens_default must be >= 1")
        if self.rpm_limit < 0:
            raise ValueError("rpm_limit must be >= 0")
        if self.rpm_window_s <= 0:
            raise ValueError("rpm_window_s must be > 0")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        """Build a config from ``AIJOBS_SIM_*`` environment variables (unset → default)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, var in _ENV_VARS.items():
            raw = env.get(var, "").strip()
            if raw:
                values[name] = raw
        try:
            return cls.from_mapping(values)
        except ValueError as exc:
            raise ValueError(f"invalid simulator environment: {exc}") from exc

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], base: SimulatorConfig | None = None) -> Self:
        """Return ``base`` (or the defaults) updated with ``values``, coercing and checking types.

        Unknown keys raise ``ValueError``.
        """
        start = base if base is not None else cls()
        known = {f.name: f for f in dataclasses.fields(cls)}
        changes: dict[str, Any] = {}
        for key, raw in values.items():
            field = known.get(key)
            if field is None:
                raise ValueError(f"unknown config field {key!r}")
            changes[key] = _coerce(key, raw, int if field.type == "int" else float)
        return cls(**{**start.as_dict(), **changes})

    def as_dict(self) -> dict[str, Any]:
        """Return the settings as a JSON-ready dict."""
        return dataclasses.asdict(self)


def _coerce(name: str, raw: Any, kind: type[int] | type[float]) -> int | float:
    if isinstance(raw, bool):
        raise ValueError(f"{name} must be a number")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {raw!r}")
    if kind is int:
        if value != int(value):
            raise ValueError(f"{name} must be an integer, got {raw!r}")
        return int(value)
    return value
