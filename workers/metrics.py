"""Prometheus metrics of the API and the workers (each process serves its own).

Names start with ``aijobs_``; labels never carry a job id, a prompt or a key. Label values
a tenant chooses (a model name) or a provider sends (an error code) are bounded: past the
first ``MAX_LABEL_VALUES`` distinct ones a process sees, they count as ``other``, so no
client can grow the number of series without end.
"""

from __future__ import annotations

import threading

from prometheus_client import Counter, Gauge, Histogram, start_http_server

MAX_LABEL_VALUES = 64


class BoundedLabel:
    """The values one label may take in this process: the first ``limit`` seen, then
    ``other``."""

    def __init__(self, limit: int = MAX_LABEL_VALUES) -> None:
        self._limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        value = str(value)[:100]
        if value in self._seen:
            return value
        with self._lock:
            if len(self._seen) < self._limit:
                self._seen.add(value)
                return value
        return "other"


#: Models (tenants name them) and provider error codes (providers choose them).
model_label = BoundedLabel()
code_label = BoundedLabel()
#: Tenants (bounded too: a deployment with thousands of tenants gets ``other`` past 64).
tenant_label = BoundedLabel()

_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

JOBS_SUBMITTED = Counter("aijobs_jobs_submitted", "Jobs accepted by the API.", ["kind"])
JOBS_FINISHED = Counter(
    "aijobs_jobs_finished", "Jobs that reached a terminal status.", ["kind", "status"]
)
TIME_QUEUED = Histogram(
    "aijobs_job_queued_seconds", "From submit to the first attempt's start.", ["kind"],
    buckets=_SECONDS,
)  # fmt: skip
TIME_TO_FIRST_TOKEN = Histogram(
    "aijobs_time_to_first_token_seconds", "From an attempt's start to its first text.",
    ["kind"], buckets=_SECONDS,
)  # fmt: skip
JOB_DURATION = Histogram(
    "aijobs_job_duration_seconds", "From submit to the terminal status.", ["kind", "status"],
    buckets=_SECONDS,
)  # fmt: skip
TOKENS = Counter("aijobs_tokens", "Tokens the provider billed.", ["model", "type"])
TENANT_TOKENS = Counter(
    "aijobs_tenant_tokens", "Tokens billed per tenant and model, every attempt counted.",
    ["tenant", "model", "type"],
)  # fmt: skip
COST_USD = Counter(
    "aijobs_cost_usd", "What attempts cost under AIJOBS_PRICES, per tenant and model.",
    ["tenant", "model"],
)  # fmt: skip
PROVIDER_ERRORS = Counter("aijobs_provider_errors", "Failed provider calls.", ["code"])
RETRIES = Counter("aijobs_retries", "Attempts that ended in a retry.", ["kind", "reason"])
RATE_LIMIT_WAITS = Counter(
    "aijobs_rate_limit_waits", "Calls held back by the fleet-wide limiter.", ["model"]
)
RATE_LIMIT_WAIT_SECONDS = Counter(
    "aijobs_rate_limit_wait_seconds", "Time calls were held back by the limiter.", ["model"]
)
#: The multiprocess modes matter under ``aijobs api --workers N`` only: readers add up
#: across the API's processes; the queue's depth is the same figure read by any of them.
STREAM_READERS = Gauge(
    "aijobs_stream_readers", "Open event readers.", ["transport"], multiprocess_mode="livesum"
)
RESCUED = Counter("aijobs_jobs_rescued", "Jobs re-enqueued by the reconciler.", ["reason"])


QUEUE_DEPTH = Gauge(
    "aijobs_queue_depth", "Jobs waiting per kind (every tenant's list), read at scrape time.",
    ["queue"], multiprocess_mode="mostrecent",
)  # fmt: skip


def serve_metrics(port: int, host: str = "0.0.0.0") -> None:
    """Serve this process's metrics on ``port`` (a worker's /metrics)."""
    start_http_server(port, addr=host)
