"""The limit of the dispatch benchmark: one asyncio process streaming straight from the provider.

    python -m ops.bench.limit --base-url URL --jobs N --tokens T --mode raw|typed --out F

No queue, no job record, no Redis: ``N`` concurrent ``AsyncOpenAI`` chat streams of ``T``
tokens, all started at once. ``raw`` reads the SSE lines of the SDK's raw streaming
response (``with_streaming_response``) and ``json.loads`` each; ``typed`` iterates the
SDK's ``ChatCompletionChunk`` objects. For each stream it records when it was asked for,
when its first token and its end came, and how many content chunks it had; and its own CPU
(user+sys of this process) over the whole burst. Prints ``DONE`` and writes JSON to ``F``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai

MODEL = "gpt-4o-mini"


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def messages(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Write a short story about lighthouse number {i}."}]


async def stream_raw(client: openai.AsyncOpenAI, i: int, tokens: int, row: dict[str, Any]) -> None:
    """Raw lines: the SDK builds the request, we parse ``data:`` lines ourselves."""
    async with client.chat.completions.with_streaming_response.create(
        model=MODEL,
        messages=messages(i),
        max_tokens=tokens,
        stream=True,  # type: ignore[arg-type]
    ) as response:
        async for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choices = json.loads(line[6:]).get("choices") or ()
            if choices and (choices[0].get("delta") or {}).get("content"):
                row["first"] = row["first"] or time.time()
                row["chunks"] += 1


async def stream_typed(
    client: openai.AsyncOpenAI, i: int, tokens: int, row: dict[str, Any]
) -> None:
    """Typed: one ``ChatCompletionChunk`` object per token, as most code reads a stream."""
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=messages(i),
        max_tokens=tokens,
        stream=True,  # type: ignore[arg-type]
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            row["first"] = row["first"] or time.time()
            row["chunks"] += 1


async def burst(args: argparse.Namespace) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=args.jobs + 10, max_keepalive_connections=args.jobs)
    http = httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(600.0), trust_env=False)
    client = openai.AsyncOpenAI(base_url=args.base_url, api_key=args.api_key, max_retries=0,
                                http_client=http)  # fmt: skip
    one = stream_raw if args.mode == "raw" else stream_typed
    try:
        warm = {"first": 0.0, "chunks": 0}
        await one(client, -1, 2, warm)  # warm-up: imports, the first connection; not measured
        rows = [{"start": 0.0, "first": 0.0, "end": 0.0, "chunks": 0} for _ in range(args.jobs)]

        async def job(i: int) -> None:
            rows[i]["start"] = time.time()
            await one(client, i, args.tokens, rows[i])
            rows[i]["end"] = time.time()

        cpu0, t0 = cpu_s(), time.time()
        await asyncio.gather(*(job(i) for i in range(args.jobs)))
        return {"mode": args.mode, "rows": rows, "cpu_s": cpu_s() - cpu0,
                "wall_s": time.time() - t0}  # fmt: skip
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", required=True, help="the provider's OpenAI base URL")
    parser.add_argument("--api-key", default="sk-bench-not-a-real-key")
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--tokens", type=int, required=True)
    parser.add_argument("--mode", choices=["raw", "typed"], required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    args.out.write_text(json.dumps(asyncio.run(burst(args))))
    print("DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
