"""Every setting aijobs reads from the environment, in one place.

Settings are built when an app (API, worker, CLI command) is assembled and passed
down; nothing reads the environment at import time or inside a task body.
"""

from __future__ import annotations

from functools import cached_property
from typing import Annotated, Any

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from aijobs.connections import RedisTarget, parse_redis_url
from aijobs.errors import ConfigurationError
from aijobs.spend.budgets import Budget, BudgetSpec, parse_config
from aijobs.spend.prices import Price
from aijobs.webhooks.signing import parse_secrets
from aijobs.webhooks.urls import UrlRejected, check_url

DEFAULT_SQLITE_URL = "sqlite:///./aijobs.db"
#: What the example secret files hold where a real secret must go.
PLACEHOLDER = "CHANGE-ME"
_SECRET_FIELDS = (
    "redis_url", "database_url", "openai_api_key", "api_keys", "token_secret",
    "flower_basic_auth", "metrics_token", "webhook_secret",
)  # fmt: skip


SettingsError = ConfigurationError


class RateLimit(BaseModel):
    """A fleet-wide budget for one model: requests and tokens per window (0 = unlimited).

    The window is a minute unless ``window_s`` says otherwise, so the configuration's
    familiar ``{"rpm": 500, "tpm": 200000}`` keeps its meaning.
    """

    model_config = ConfigDict(populate_by_name=True)

    requests: int = Field(
        default=0, ge=0, validation_alias=AliasChoices("requests", "rpm"),
        description="requests per window",
    )  # fmt: skip
    tokens: int = Field(
        default=0, ge=0, validation_alias=AliasChoices("tokens", "tpm"),
        description="tokens per window",
    )  # fmt: skip
    window_s: float = Field(default=60.0, gt=0.0)


def _env(name: str) -> AliasChoices:
    """Accept a variable both bare (``REDIS_URL``) and with the ``AIJOBS_`` prefix."""
    return AliasChoices(name, f"AIJOBS_{name}")


class Settings(BaseSettings):
    """The whole configuration of an aijobs process."""

    model_config = SettingsConfigDict(
        env_prefix="AIJOBS_",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
        # An empty variable (OPENAI_BASE_URL= in a compose file) means "not set".
        env_ignore_empty=True,
    )

    # Services.
    redis_url: str | None = Field(default=None, validation_alias=_env("REDIS_URL"))
    #: With a ``sentinel://`` REDIS_URL: the name of the master the Sentinels watch.
    redis_sentinel_master: str = "mymaster"
    database_url: str = Field(default=DEFAULT_SQLITE_URL, validation_alias=_env("DATABASE_URL"))

    # The provider: any OpenAI-compatible endpoint.
    openai_api_key: SecretStr | None = Field(default=None, validation_alias=_env("OPENAI_API_KEY"))
    openai_base_url: str | None = Field(default=None, validation_alias=_env("OPENAI_BASE_URL"))
    provider_name: str = "openai"
    #: A provider call's read timeout (no byte for this long), and its total deadline (a
    #: stream that trickles or stalls while keeping the connection alive ends there).
    provider_timeout_s: float = 600.0
    provider_deadline_s: float = 1800.0
    provider_connect_timeout_s: float = 10.0

    # Auth: bootstrap keys, "tenant:key" pairs, comma-separated.
    api_keys: SecretStr = Field(default=SecretStr(""), validation_alias=_env("API_KEYS"))

    # API.
    #: Request bodies: submissions may be large (an embedding job of 100,000 texts of
    #: ~600 characters); every other body, and a submission of any other kind, is held to
    #: the small limit.
    max_jobs_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    max_body_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    #: Characters of prompt text (messages, or text + instructions) per job.
    max_input_chars: int = Field(default=1_000_000, ge=1)
    #: Size of an extraction's JSON Schema, serialised.
    max_schema_bytes: int = Field(default=100_000, ge=100)
    #: A job's metadata, as compact JSON, and how deep it may nest.
    max_metadata_bytes: int = Field(default=16_384, ge=64)
    max_metadata_depth: int = Field(default=8, ge=1)
    #: Any request's JSON nesting (deeper is 422 before it is validated).
    max_json_depth: int = Field(default=64, ge=8)
    #: The models this deployment accepts (empty: any), and per tenant ({"t": ["m"]}).
    models: Annotated[list[str], NoDecode] = Field(default_factory=list)
    tenant_models: dict[str, list[str]] = Field(default_factory=dict)
    #: The largest max_tokens a job may ask (per model, "*" for the rest).
    max_output_tokens: dict[str, int] = Field(default_factory=lambda: {"*": 32_768})
    #: Per tenant: submissions per second, unfinished jobs, open event readers (per API
    #: process). 0 turns a limit off.
    tenant_submits_per_s: int = Field(default=50, ge=0)
    tenant_max_active_jobs: int = Field(default=1_000, ge=0)
    tenant_max_readers: int = Field(default=200, ge=0)
    #: Fleet-wide: jobs of one tenant running at once (0: no cap), and each tenant's
    #: share of the queue ({"big-customer": 3}; others weigh 1).
    tenant_max_running: int = Field(default=0, ge=0)
    tenant_weights: dict[str, float] = Field(default_factory=dict)
    #: How long a key lookup is cached (a revoked key stops working within this), and how
    #: many failed key checks one client address gets per second before a 429.
    key_cache_ttl_s: float = Field(default=10.0, ge=0.0)
    key_failures_per_s: int = Field(default=20, ge=0)
    #: How long an Idempotency-Key keeps returning the same job.
    idempotency_ttl_s: int = Field(default=86_400, ge=60)
    #: How far ahead a job may be scheduled (run_at, delay_s): 30 days, the data
    #: retention's default, so a scheduled job cannot outlive the promise of its data.
    max_schedule_ahead_s: int = Field(default=30 * 86_400, ge=60)
    #: Jobs in one POST /v1/jobs/batch.
    batch_max_jobs: int = Field(default=500, ge=1, le=10_000)
    #: How long DELETE of a running job waits for its cancel to take (it stops at its next
    #: chunk, or between an embedding's batches) before it answers 409.
    delete_wait_s: float = Field(default=10.0, ge=0.0, le=60.0)
    #: Signs short-lived event tokens for browsers; every API process needs the same one
    #: (at least 32 characters).
    token_secret: SecretStr | None = None
    token_ttl_s: int = Field(default=600, ge=10, le=86_400)
    #: The API's public address (https://jobs.example.com): token URLs are built from it,
    #: never from a request's Host header; without it they are relative paths.
    public_url: str | None = None
    #: /metrics asks for this bearer token when set.
    metrics_token: SecretStr | None = None
    #: Slow clients: a request's head must arrive within header_timeout_s and its body
    #: within body_timeout_s; an idle kept-alive connection closes after keepalive_s; one
    #: API process holds at most max_connections; a WebSocket message is at most this big.
    header_timeout_s: float = Field(default=10.0, gt=0.0)
    body_timeout_s: float = Field(default=60.0, gt=0.0)
    keepalive_s: int = Field(default=5, ge=1)
    max_connections: int = Field(default=4096, ge=1)
    ws_max_message_bytes: int = Field(default=65_536, ge=1024)
    #: Origins allowed to call the API from a browser (CORS is off when empty).
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: Finished jobs' inputs, outputs and streams are deleted after this long.
    data_retention_s: int = Field(default=30 * 86_400, ge=60)
    purge_interval_s: float = Field(default=3_600.0, ge=1.0)

    # Events.
    stream_retention_s: int = Field(default=86_400, ge=60)
    stream_maxlen: int = Field(default=100_000, ge=100)
    #: A finished job's event log moves to SQL (readers resume from there for as long as
    #: retention keeps the job) and its Redis stream expires this long after.
    archive_events: bool = True
    archived_stream_ttl_s: int = Field(default=600, ge=1)
    delta_flush_ms: float = Field(default=25.0, ge=0.0, le=1_000.0)
    sse_keepalive_s: float = Field(default=15.0, gt=0.0)
    #: A reader whose socket takes nothing for this long is dropped (it can resume by id).
    reader_send_timeout_s: float = Field(default=30.0, gt=0.0)

    # Jobs and aijobs.
    #: Attempts per job: those that failed with a retryable error plus those whose
    #: worker vanished. Waiting for budget and hand-offs at shutdown do not count.
    max_attempts: int = Field(default=5, ge=1)
    #: A job whose attempts lose their worker this many times ends ``failed: poison``
    #: (it crashes or freezes whatever runs it).
    poison_after_losses: int = Field(default=3, ge=1)
    lease_ttl_s: float = Field(default=15.0, ge=0.5)
    reconcile_interval_s: float = Field(default=5.0, ge=0.1)
    #: A job handed to the broker that has not started within this is sent again (its
    #: message was lost: an error before it was claimed, a Redis that came back empty).
    dispatch_timeout_s: float = Field(default=20.0, ge=1.0)
    #: An unfinished job not seen anywhere in Redis for this long is queued again (the
    #: API died between its INSERT and its push, Redis lost the push).
    orphan_grace_s: float = Field(default=10.0, ge=0.5)
    #: Event ids reserved in SQL per step (see the event writer).
    event_id_block: int = Field(default=1000, ge=10)
    shutdown_grace_s: float = Field(default=20.0, ge=0.0)
    task_time_limit_s: int = Field(default=3_600, ge=10)
    visibility_timeout_s: int = Field(default=7_200, ge=60)
    worker_concurrency: int = Field(default=100, ge=1)
    worker_pool: str = "threads"
    #: Per model (or "*"): {"gpt-4o-mini": {"rpm": 500, "tpm": 200000}}, as JSON in the env.
    rate_limits: dict[str, RateLimit] = Field(default_factory=dict)
    #: The most of a model's tokens per window one tenant's jobs may spend (1: no share).
    tenant_budget_share: float = Field(default=0.5, gt=0.0, le=1.0)
    #: A rate-limit wait up to this long is slept in the worker; a longer one frees the
    #: worker slot and the job waits in the queue.
    rate_limit_sleep_max_s: float = Field(default=2.0, ge=0.0)
    retry_base_s: float = Field(default=1.0, gt=0.0)
    retry_cap_s: float = Field(default=60.0, gt=0.0)
    default_model: str = "gpt-4o-mini"
    #: What the fleet's token budget is charged for a job's answer before the call (the
    #: smaller of this and its max_tokens); the real usage settles it afterwards.
    estimate_answer_tokens: int = Field(default=1024, ge=1)
    #: Embeddings: inputs per job, per provider request, tokens per request (estimated at
    #: ~4 characters a token), requests in flight per job, retries of one failed request.
    embed_max_inputs: int = Field(default=100_000, ge=1)
    embed_batch_size: int = Field(default=2048, ge=1, le=2048)
    embed_batch_tokens: int = Field(default=250_000, ge=1_000)
    embed_concurrency: int = Field(default=4, ge=1, le=64)
    embed_batch_retries: int = Field(default=2, ge=0)
    #: How many times an extraction's invalid answer is fed back for repair, and how long
    #: checking one answer against its schema may take (in a child process).
    extract_repair_rounds: int = Field(default=2, ge=0, le=10)
    extract_validation_timeout_s: float = Field(default=10.0, gt=0.0)

    # Webhooks (aijobs.webhooks): completion callbacks, signed per Standard Webhooks.
    #: ``whsec_<base64>`` (several, space-separated, newest first, while rotating: each
    #: signs every request). Unset: webhooks are off and ``webhook_url`` is refused.
    webhook_secret: SecretStr | None = None
    #: Whether the API accepts ``webhook_url`` (unset: when it has the secret). The API
    #: signs nothing: a fleet that keeps the secret with the workers alone (least
    #: privilege; compose does) turns webhooks on in the API with this.
    webhooks_enabled: bool | None = None
    #: Hosts a webhook may use ``http://`` for and whose addresses are not checked (an
    #: internal receiver of yours), comma-separated; every other URL must be ``https://``
    #: and reach only public addresses.
    webhook_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: Per tenant: the webhook URL of its jobs that name none ({"acme": "https://…"}).
    webhook_tenant_urls: dict[str, str] = Field(default_factory=dict)
    #: One POST's total time (resolve, connect, TLS, send, the answer's head).
    webhook_timeout_s: float = Field(default=10.0, gt=0.0, le=120.0)
    #: Attempts per event before it is given up (recorded in the job's ``webhook``), and
    #: the backoff between them: exponential from the base, up to the cap, jittered.
    webhook_max_attempts: int = Field(default=12, ge=1, le=100)
    webhook_retry_base_s: float = Field(default=10.0, gt=0.0)
    webhook_retry_cap_s: float = Field(default=3_600.0, gt=0.0)
    #: How often a worker process looks for due deliveries, and how many it sends at once.
    webhook_poll_interval_s: float = Field(default=1.0, gt=0.0)
    webhook_concurrency: int = Field(default=8, ge=1, le=256)

    # Spend.
    #: USD per 1M tokens, per model ("*" for the rest): {"gpt-4o-mini": {"input": 0.15,
    #: "output": 0.6, "cached_input": 0.075}}. A model without a price has no cost.
    prices: dict[str, Price] = Field(default_factory=dict)
    #: Budgets per tenant (SQL ones, set with `aijobs tenants set-budget`, replace these):
    #: {"acme": [{"usd": 10, "period": "day"}, {"tokens": 5000000, "period": "month"}]}.
    tenant_budgets: dict[str, list[BudgetSpec]] = Field(default_factory=dict)
    #: How long a process caches a tenant's budgets read from SQL.
    budget_cache_ttl_s: float = Field(default=5.0, ge=0.0)
    #: A running generation of a tenant with a budget checks it every this many chunks.
    budget_check_chunks: int = Field(default=16, ge=1)
    #: Ask the provider for usage in every chunk (vLLM's
    #: ``stream_options.continuous_usage_stats``; the simulator has it too), so a stream
    #: cut short still says what it cost. OpenAI itself does not take it: off by default.
    provider_continuous_usage: bool = False

    # Operations.
    #: A worker serves Prometheus metrics on this port (unset: it does not).
    worker_metrics_port: int | None = None
    #: A worker touches this file every few seconds (for container health checks).
    worker_heartbeat_file: str | None = None
    flower_basic_auth: SecretStr | None = None
    log_json: bool = False
    log_level: str = "INFO"

    @field_validator("tenant_budgets", mode="before")
    @classmethod
    def _budgets(cls, value: Any) -> Any:
        return parse_config(value) if isinstance(value, dict) else value

    def configured_budgets(self, tenant: str) -> list[Budget]:
        """The budgets ``AIJOBS_TENANT_BUDGETS`` gives ``tenant``."""
        return [spec.budget() for spec in self.tenant_budgets.get(tenant, [])]

    @field_validator("cors_origins", "models", "webhook_allowed_hosts", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @model_validator(mode="after")
    def _limits_fit_visibility(self) -> Settings:
        # A running task that outlives the broker's visibility timeout is delivered a
        # second time: refuse such a configuration.
        if self.visibility_timeout_s <= self.task_time_limit_s:
            raise ValueError(
                f"AIJOBS_VISIBILITY_TIMEOUT_S ({self.visibility_timeout_s}) must exceed "
                f"AIJOBS_TASK_TIME_LIMIT_S ({self.task_time_limit_s})"
            )
        if self.provider_timeout_s >= self.task_time_limit_s:
            raise ValueError("AIJOBS_PROVIDER_TIMEOUT_S must be below AIJOBS_TASK_TIME_LIMIT_S")
        if any(w <= 0 for w in self.tenant_weights.values()):
            raise ValueError("AIJOBS_TENANT_WEIGHTS must be positive numbers")
        if self.token_secret is not None and len(self.token_secret.get_secret_value()) < 32:
            raise ValueError("AIJOBS_TOKEN_SECRET must be at least 32 characters")
        for name in _SECRET_FIELDS:
            value = getattr(self, name)
            text = value.get_secret_value() if isinstance(value, SecretStr) else value
            if isinstance(text, str) and PLACEHOLDER in text:
                raise ValueError(
                    f"{name.upper()} still holds a placeholder ({PLACEHOLDER}…): fill it in "
                    "(python3 ops/make_secrets.py writes every secret file)"
                )
        return self

    @model_validator(mode="after")
    def _webhooks_usable(self) -> Settings:
        # Refused at start, not at the first job's end: a secret that cannot sign, or a
        # tenant default that no job could be sent to.
        if self.webhook_secret is not None:
            parse_secrets(self.webhook_secret.get_secret_value())
        elif self.webhook_tenant_urls and not self.webhooks_on:
            raise ValueError(
                "AIJOBS_WEBHOOK_TENANT_URLS needs AIJOBS_WEBHOOK_SECRET "
                "(or, on an API without it, AIJOBS_WEBHOOKS_ENABLED=true)"
            )
        for tenant, url in self.webhook_tenant_urls.items():
            try:
                check_url(url, self.webhook_allowed_hosts)
            except UrlRejected as exc:
                raise ValueError(f"AIJOBS_WEBHOOK_TENANT_URLS[{tenant}]: {exc}") from None
        return self

    @property
    def webhooks_on(self) -> bool:
        """Whether jobs may carry a webhook URL."""
        if self.webhooks_enabled is not None:
            return self.webhooks_enabled
        return self.webhook_secret is not None

    def models_for(self, tenant: str) -> list[str]:
        """The models ``tenant`` may use (empty: any)."""
        return self.tenant_models.get(tenant) or self.models

    def output_cap(self, model: str) -> int:
        """The largest max_tokens a job of ``model`` may ask."""
        return self.max_output_tokens.get(model) or self.max_output_tokens.get("*") or 32_768

    def redis_target(self) -> RedisTarget:
        """Where Redis is (a URL, or Sentinels), or a clear error when none is configured."""
        return parse_redis_url(self.require_redis_url(), sentinel_master=self.redis_sentinel_master)

    def require_redis_url(self) -> str:
        """The Redis URL, or a clear error when none is configured."""
        if not self.redis_url:
            raise SettingsError(
                "REDIS_URL is not set: point it at a Redis server, or use `aijobs dev`, "
                "which starts a private one"
            )
        return self.redis_url

    @cached_property
    def tenant_by_key(self) -> dict[str, str]:
        """Bootstrap API keys: key -> tenant."""
        pairs: dict[str, str] = {}
        for item in self.api_keys.get_secret_value().split(","):
            item = item.strip()
            if not item:
                continue
            tenant, sep, key = item.partition(":")
            if not sep or not tenant.strip() or not key.strip():
                raise SettingsError("AIJOBS_API_KEYS must be comma-separated tenant:key pairs")
            pairs[key.strip()] = tenant.strip()
        return pairs
