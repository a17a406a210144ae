"""Run-time settings of the OpenAI-compatible simulator (and its chaos section)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

_ENV_VARS: dict[str, str] = {
    "latency_ms": "AIJOBS_SIM_LATENCY_MS",
    "tokens_per_second": "AIJOBS_SIM_TOKENS_PER_SECOND",
    "max_tokens_default": "AIJOBS_SIM_MAX_TOKENS",
    "rpm_limit": "AIJOBS_SIM_RPM_LIMIT",
    "rpm_window_s": "AIJOBS_SIM_RPM_WINDOW_S",
}
CHAOS_ENV_VAR = "AIJOBS_SIM_CHAOS"
"""Environment variable holding the chaos section as JSON (``{"seed": 7, "cut": 0.05}``)."""

CHAOS_FAULT_KINDS: tuple[str, ...] = ("rate_limit", "server_error", "cut", "trickle", "stall")
"""Chaos kinds that replace the answer, in the order a request's draw is mapped onto them."""


@dataclass(frozen=True, slots=True)
class ChaosConfig:
    """Random faults: per chat/embeddings request probabilities, drawn from a seeded RNG.

    Every request draws once: at most one of the five fault kinds (their probabilities must
    sum to at most 1), and independently ``odd_text``. Scripted faults take precedence.

    Attributes:
        seed: seeds the draws; the same seed gives the same sequence of outcomes.
        by_key: draw from ``(seed, request key, n-th request with that key)`` instead of
            ``(seed, n-th request)``, so each job's outcomes survive reordering by concurrency.
        rate_limit: probability of a 429 ``rate_limit_exceeded`` with retry headers.
        server_error: probability of a 500 (sometimes 502 or 503).
        cut: probability that the connection drops mid-answer.
        trickle: probability of an answer that progresses, one chunk per interval.
        stall: probability of an answer that stops and only sends keep-alives.
        odd_text: probability that generated text holds U+2028, U+2029, U+0085 and other
            non-ASCII text (chat only).
        retry_after_min_s: smallest advertised ``rate_limit`` wait.
        retry_after_max_s: largest advertised ``rate_limit`` wait.
        trickle_min_s: shortest pause between trickled chunks.
        trickle_max_s: longest pause between trickled chunks.
        stall_after_max_chunks: a stall starts after 0 to this many content chunks.
        stall_keepalive_s: pause between the keep-alives of a stall.
    """

    seed: int = 0
    by_key: bool = False
    rate_limit: float = 0.0
    server_error: float = 0.0
    cut: float = 0.0
    trickle: float = 0.0
    stall: float = 0.0
    odd_text: float = 0.0
    retry_after_min_s: float = 0.05
    retry_after_max_s: float = 1.0
    trickle_min_s: float = 1.0
    trickle_max_s: float = 3.0
    stall_after_max_chunks: int = 3
    stall_keepalive_s: float = 1.0

    def __post_init__(self) -> None:
        """Coerce the field types and reject probabilities or ranges that make no sense."""
        _coerce_fields(self)
        for name in (*CHAOS_FAULT_KINDS, "odd_text"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"chaos.{name} must be a probability between 0 and 1")
        if sum(getattr(self, name) for name in CHAOS_FAULT_KINDS) > 1 + 1e-9:
            raise ValueError(f"chaos: {' + '.join(CHAOS_FAULT_KINDS)} must be <= 1")
        if not 0 <= self.retry_after_min_s <= self.retry_after_max_s:
            raise ValueError("chaos: need 0 <= retry_after_min_s <= retry_after_max_s")
        if not 0 < self.trickle_min_s <= self.trickle_max_s:
            raise ValueError("chaos: need 0 < trickle_min_s <= trickle_max_s")
        if self.stall_after_max_chunks < 0:
            raise ValueError("chaos.stall_after_max_chunks must be >= 0")
        if self.stall_keepalive_s <= 0:
            raise ValueError("chaos.stall_keepalive_s must be > 0")

    @property
    def enabled(self) -> bool:
        """Whether any probability is above zero."""
        return any(getattr(self, name) > 0 for name in (*CHAOS_FAULT_KINDS, "odd_text"))

    @classmethod
    def from_mapping(cls, values: Any) -> Self:
        """Build the section from its JSON form; ``None`` gives the defaults (chaos off).

        The section is replaced as a whole: fields left out take their defaults.
        """
        if values is None:
            return cls()
        if not isinstance(values, Mapping):
            raise ValueError("chaos must be an object or null")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown chaos field(s): {', '.join(unknown)}")
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """Return the section as a JSON-ready dict."""
        return dataclasses.asdict(self)


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
        prompt_cache: a chat request whose messages were seen before reports its prompt
            tokens as cached (``usage.prompt_tokens_details.cached_tokens``), as a
            provider's prompt cache does; off: ``cached_tokens`` is always 0.
        chaos: random faults (off by default); see :class:`ChaosConfig`.
    """

    latency_ms: float = 0.0
    tokens_per_second: float = 50.0
    max_tokens_default: int = 64
    rpm_limit: int = 0
    rpm_window_s: float = 60.0
    prompt_cache: bool = False
    chaos: ChaosConfig = field(default_factory=ChaosConfig)

    def __post_init__(self) -> None:
        """Coerce numbers to the field types and reject negative or nonsensical values."""
        if not isinstance(self.chaos, ChaosConfig):
            object.__setattr__(self, "chaos", ChaosConfig.from_mapping(self.chaos))
        _coerce_fields(self)
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
        """Build a config from ``AIJOBS_SIM_*`` environment variables (unset → default).

        ``AIJOBS_SIM_CHAOS`` holds the chaos section as JSON.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, var in _ENV_VARS.items():
            raw = env.get(var, "").strip()
            if raw:
                values[name] = raw
        try:
            raw_chaos = env.get(CHAOS_ENV_VAR, "").strip()
            if raw_chaos:
                try:
                    values["chaos"] = json.loads(raw_chaos)
                except ValueError:
                    raise ValueError(f"{CHAOS_ENV_VAR} is not valid JSON") from None
            return cls.from_mapping(values)
        except ValueError as exc:
            raise ValueError(f"invalid simulator environment: {exc}") from exc

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], base: SimulatorConfig | None = None) -> Self:
        """Return ``base`` (or the defaults) updated with ``values``, coercing and checking types.

        Unknown keys raise ``ValueError``. A ``chaos`` value replaces the whole section.
        """
        start = base if base is not None else cls()
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = [key for key in values if key not in known]
        if unknown:
            raise ValueError(f"unknown config field {unknown[0]!r}")
        changes = dict(values)
        if "chaos" in changes:
            changes["chaos"] = ChaosConfig.from_mapping(changes["chaos"])
        return cls(**{**start.as_dict(), **changes})

    def as_dict(self) -> dict[str, Any]:
        """Return the settings as a JSON-ready dict (``chaos`` as a nested object)."""
        return dataclasses.asdict(self)


def _coerce_fields(obj: Any) -> None:
    """Coerce every ``int``/``float``/``bool`` field of a frozen dataclass in place."""
    prefix = "chaos." if isinstance(obj, ChaosConfig) else ""
    for f in dataclasses.fields(obj):
        name, raw = prefix + f.name, getattr(obj, f.name)
        if f.type == "bool":
            if not isinstance(raw, bool):
                raise ValueError(f"{name} must be true or false, got {raw!r}")
        elif f.type in ("int", "float"):
            value = _coerce(name, raw, int if f.type == "int" else float)
            object.__setattr__(obj, f.name, value)


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
