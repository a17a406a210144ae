"""One harness for tests and benchmarks: the system's parts as real processes, and figures.

- processes: :class:`Harness` (a working directory and every child started through it:
  ``start_redis``, ``sqlite_url``, ``start_simulator``, ``start_api``, ``start_worker``,
  ``start_workers``,
  ``start_celery_worker``, ``spawn``; ``close`` stops them all by process group),
  :class:`Child` / :class:`Service` / :class:`Worker`, :func:`spawn`, :class:`LinePipe`
  (a READY/GO/DONE line protocol with a child), :func:`aijobs_argv`
  (``python -P -m aijobs.cli ...``), :func:`api_supports_workers`;
- environment: :func:`child_env` (no inherited ``AIJOBS_`` or proxy variables);
- waiting: :func:`wait_for`, :func:`wait_url`, :func:`url_answers`,
  :func:`wait_worker_ready` (a dead child fails the wait at once, with its log tail);
- in this process: :func:`serve_in_thread`, :func:`running_simulator`;
- figures: :func:`tree_cpu`, :class:`CpuMeter` (user+sys of process trees), :func:`own_cpu`,
  :func:`percentiles`, :func:`max_overlap`, :class:`Figure`, :func:`figures_table`,
  :func:`markdown_table`, :func:`write_json`.

It needs psutil, which the ``test`` and ``bench`` extras install (the runtime does not).

Example::

    with Harness(tmp_path) as h:
        redis = h.start_redis()
        sim = h.start_simulator(config={"tokens_per_second": 200})
        env = child_env(redis_url=redis.url, database_url=h.sqlite_url(),
                        openai_base_url=f"{sim.url}/v1", openai_api_key="sk-test",
                        aijobs={"api_keys": "t:key-0123456789"})
        api = h.start_api(env)
        worker = h.start_worker(env, queues="generate", concurrency=8)
        meter = CpuMeter({"api": api.pid, "worker": worker.pid})
        meter.start()
        ...  # drive the API at api.url
        print(meter.stop()["worker"].total)
"""

from aijobs.devtools.harness.cpu import (
    CpuMeter,
    CpuTimes,
    cpu_diff,
    cpu_snapshot,
    own_cpu,
    tree_cpu,
)
from aijobs.devtools.harness.env import child_env
from aijobs.devtools.harness.inthread import InThreadServer, running_simulator, serve_in_thread
from aijobs.devtools.harness.process import Child, HarnessError, LinePipe, aijobs_argv, spawn
from aijobs.devtools.harness.report import (
    Figure,
    figures_table,
    format_value,
    markdown_table,
    to_jsonable,
    write_json,
)
from aijobs.devtools.harness.services import (
    Harness,
    Service,
    Worker,
    api_supports_workers,
    wait_worker_ready,
)
from aijobs.devtools.harness.stats import Percentiles, max_overlap, percentile, percentiles, ratio
from aijobs.devtools.harness.wait import url_answers, wait_for, wait_url
from aijobs.devtools.redis_server import RedisServer, free_port

__all__ = [
    "Child",
    "CpuMeter",
    "CpuTimes",
    "Figure",
    "Harness",
    "HarnessError",
    "InThreadServer",
    "LinePipe",
    "Percentiles",
    "RedisServer",
    "Service",
    "Worker",
    "aijobs_argv",
    "api_supports_workers",
    "child_env",
    "cpu_diff",
    "cpu_snapshot",
    "figures_table",
    "format_value",
    "free_port",
    "markdown_table",
    "max_overlap",
    "own_cpu",
    "percentile",
    "percentiles",
    "ratio",
    "running_simulator",
    "serve_in_thread",
    "spawn",
    "to_jsonable",
    "tree_cpu",
    "url_answers",
    "wait_for",
    "wait_url",
    "wait_worker_ready",
    "write_json",
]
