"""The naive baseline of the streaming benchmark: the textbook way to relay a token stream.

A Celery worker of its own (app ``naive``, queue ``naive``, the prefork pool) whose task
streams a chat completion with the typed SDK (``chat.completions.create(stream=True)``,
one ``ChatCompletionChunk`` object per token) and writes EVERY token to Redis as it
arrives: one ``XADD`` to the job's stream plus one ``PUBLISH`` to its channel, sent
together in one non-transactional pipeline, i.e. ONE Redis round trip per token
(``NAIVE_REDIS_MODE=separate``: two plain calls, two round trips per token).

The prompt parameters come in the task arguments (no SQL). When a job ends, one more
round trip records its start/finish times, token count, pid and text under
``bench:naive:{<job_id>}:job`` and increments ``bench:naive:done``.

Run: ``python -m ops.bench.naive_worker --concurrency 2`` with ``REDIS_URL`` and
``OPENAI_BASE_URL`` (and ``OPENAI_API_KEY``) in the environment.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import openai
import redis
from celery import Celery

QUEUE = "naive"
TASK_NAME = "naive.generate"
DONE_KEY = "bench:naive:done"
STREAM_MAXLEN = 100_000


def job_key(job_id: str) -> str:
    """Hash with the job's started/finished times (epoch s), token count, pid and text."""
    return f"bench:naive:{{{job_id}}}:job"


def events_key(job_id: str) -> str:
    """The job's Redis Stream: one entry per token, then a ``done`` entry."""
    return f"bench:naive:{{{job_id}}}:events"


def live_channel(job_id: str) -> str:
    """The job's pub/sub channel: one message per token."""
    return f"bench:naive:{{{job_id}}}:live"


def create_app(broker_url: str) -> Celery:
    """The baseline's Celery app with its one task (also what the benchmark sends with)."""
    app = Celery("naive", broker=broker_url)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        task_default_queue=QUEUE,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    app.task(name=TASK_NAME)(generate)
    return app


# One SDK client and one Redis client per pool process, built after the fork.
_clients: dict[int, tuple[openai.OpenAI, redis.Redis]] = {}


def _clients_here() -> tuple[openai.OpenAI, redis.Redis]:
    pid = os.getpid()
    found = _clients.get(pid)
    if found is None:
        _clients.clear()
        found = (
            openai.OpenAI(
                base_url=os.environ["OPENAI_BASE_URL"],
                api_key=os.environ.get("OPENAI_API_KEY") or "unused",
                max_retries=0,
            ),
            redis.Redis.from_url(os.environ["REDIS_URL"]),
        )
        _clients[pid] = found
    return found


def generate(job_id: str, model: str, messages: list[dict[str, Any]], max_tokens: int) -> int:
    """Stream one completion, relaying each token to Redis as it arrives."""
    client, rds = _clients_here()
    started = time.time()
    stream_key, channel = events_key(job_id), live_channel(job_id)
    parts: list[str] = []
    pipelined = os.environ.get("NAIVE_REDIS_MODE", "pipeline") != "separate"
    stream = client.chat.completions.create(
        model=model,
        messages=messages,  # type: ignore[arg-type]
        max_tokens=max_tokens,
        stream=True,
    )
    for chunk in stream:
        if not chunk.choices:
            continue
        text = chunk.choices[0].delta.content
        if not text:
            continue
        parts.append(text)
        data = json.dumps({"text": text}, separators=(",", ":"), ensure_ascii=False)
        if pipelined:
            pipe = rds.pipeline(transaction=False)
            pipe.xadd(stream_key, {"e": "delta", "d": data}, maxlen=STREAM_MAXLEN, approximate=True)
            pipe.publish(channel, data)
            pipe.execute()
        else:
            rds.xadd(stream_key, {"e": "delta", "d": data}, maxlen=STREAM_MAXLEN, approximate=True)
            rds.publish(channel, data)
    finished = time.time()
    text = "".join(parts)
    pipe = rds.pipeline(transaction=False)
    pipe.xadd(stream_key, {"e": "done", "d": '{"status":"succeeded"}'})
    pipe.hset(
        job_key(job_id),
        mapping={
            "started": repr(started),
            "finished": repr(finished),
            "tokens": len(parts),
            "pid": os.getpid(),
            "text": text,
        },
    )
    pipe.incr(DONE_KEY)
    pipe.execute()
    return len(parts)


def main(argv: list[str] | None = None) -> int:
    """Run the baseline worker (prefork pool) on the ``naive`` queue."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--pool", default="prefork")
    parser.add_argument("--hostname", default=None)
    parser.add_argument("--loglevel", default="WARNING")
    args = parser.parse_args(argv)
    worker_argv = [
        "worker",
        f"--pool={args.pool}",
        f"--concurrency={args.concurrency}",
        f"--queues={QUEUE}",
        f"--loglevel={args.loglevel}",
        "--without-gossip",
        "--without-mingle",
    ]
    if args.hostname:
        worker_argv.append(f"--hostname={args.hostname}")
    create_app(os.environ["REDIS_URL"]).worker_main(worker_argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
