"""The floor under a job start: a bare Celery worker configured as ours, doing (almost) nothing.

A Celery app of its own (app ``floor``, queue ``floor``, the threads pool) with the
settings of ``aijobs worker`` that cost CPU per message: late acks (kombu's unacked index
in Redis), prefetch 1, task events on (Flower's view). Its task, by ``--mode``:

* ``noop``: records that it ran, nothing else. What Celery alone costs per job.
* ``call``: also makes the job's provider call the way ours does (the SDK's raw
  streaming response, SSE lines, ``json.loads`` each): Celery plus the call, still without
  a job record, events, lease, fence or budget.

Each task, when done, does ``HSET bench:floor:done <i> <epoch s>`` (one round trip).

Run: ``python -m ops.bench.celery_floor --concurrency N --mode call`` with ``REDIS_URL`` and
``OPENAI_BASE_URL`` in the environment.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import openai
import redis
from celery import Celery

QUEUE = "floor"
TASK_NAME = "floor.job"
DONE_KEY = "bench:floor:done"
MODEL = "gpt-4o-mini"

_mode = "noop"
_clients: dict[str, tuple[openai.OpenAI, redis.Redis]] = {}


def create_app(broker_url: str) -> Celery:
    """The floor's app (also what the benchmark sends with)."""
    app = Celery("floor", broker=broker_url)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_send_task_events=True,
        task_send_sent_event=False,
        task_default_queue=QUEUE,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    app.task(name=TASK_NAME)(job)
    return app


def _here() -> tuple[openai.OpenAI, redis.Redis]:
    found = _clients.get("c")
    if found is None:
        found = _clients["c"] = (
            openai.OpenAI(
                base_url=os.environ["OPENAI_BASE_URL"],
                max_retries=0,
                api_key=os.environ.get("OPENAI_API_KEY") or "unused",
            ),
            redis.Redis.from_url(os.environ["REDIS_URL"]),
        )
    return found


def job(i: int, tokens: int) -> int:
    """One job: (``call``) one streamed completion of ``tokens``; then note it done."""
    client, rds = _here()
    chunks = 0
    if _mode == "call":
        with client.chat.completions.with_streaming_response.create(
            model=MODEL,
            messages=[{"role": "user", "content": f"Write about lighthouse number {i}."}],
            max_tokens=tokens,
            stream=True,
        ) as response:
            for line in response.iter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    choices = json.loads(line[6:]).get("choices") or ()
                    chunks += bool(choices and (choices[0].get("delta") or {}).get("content"))
    rds.hset(DONE_KEY, str(i), repr(time.time()))
    return chunks


def main(argv: list[str] | None = None) -> int:
    """Run the floor's worker (threads pool) on the ``floor`` queue."""
    global _mode
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--mode", choices=["noop", "call"], required=True)
    parser.add_argument("--hostname", required=True)
    args = parser.parse_args(argv)
    _mode = args.mode
    create_app(os.environ["REDIS_URL"]).worker_main(
        [
            "worker",
            "--pool=threads",
            f"--concurrency={args.concurrency}",
            f"--queues={QUEUE}",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
            f"--hostname={args.hostname}",
        ]
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
