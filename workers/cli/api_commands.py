"""The commands that talk to a running API: submit, jobs, show, follow, cancel, retry,
delete.

They read AIJOBS_URL (default http://127.0.0.1:8000) and AIJOBS_API_KEY, or --url and
--key. Exit codes: 0 the job succeeded (or the command did what it says), 1 the job
failed or was cancelled, 2 bad usage, 3 the API refused or could not be reached.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from aijobs.cli import render
from aijobs.cli.follow import Outcome, follow_job
from aijobs.cli.vectors_file import write_vectors
from aijobs.client import ApiError, ApiUnavailable, Client, JobPublic, NoResult
from aijobs.client.calls import generation_options

EXIT_OK, EXIT_JOB_FAILED, EXIT_USAGE, EXIT_API = 0, 1, 2, 3


class UsageError(Exception):
    """Raised when the command line asks for something that cannot be done."""


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _guarded(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Map the client's errors to a message on stderr and exit code 3 (2 for usage)."""

    @functools.wraps(run)
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except UsageError as exc:
            print(f"aijobs: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except ApiError as exc:
            print(f"aijobs: {exc.detail} (HTTP {exc.status})", file=sys.stderr)
            return EXIT_API
        except ApiUnavailable as exc:
            print(f"aijobs: {exc}", file=sys.stderr)
            return EXIT_API

    return wrapper


def _client(args: argparse.Namespace) -> Client:
    if args.key:
        # Other users of the machine see a command line (ps, /proc); the environment is
        # the process's own.
        print(
            "aijobs: warning: a key given with --key shows in the process list; "
            "prefer AIJOBS_API_KEY",
            file=sys.stderr,
        )
    return Client(args.url, args.key)


def _read_arg(value: str, what: str) -> str:
    """A value, or the contents of the file after an ``@``."""
    if not value.startswith("@"):
        return value
    try:
        return Path(value[1:]).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{what}: cannot read {value[1:]}: {exc.strerror}") from None


def _read_texts(args: argparse.Namespace) -> list[str]:
    texts = list(args.texts)
    if args.file:
        try:
            raw = sys.stdin.read() if args.file == "-" else Path(args.file).read_text("utf-8")
        except OSError as exc:
            raise UsageError(f"--file: cannot read {args.file}: {exc.strerror}") from None
        # Cut at LF only (and drop a CR before it): U+2028 and friends are text.
        texts += [line.removesuffix("\r") for line in raw.split("\n")]
        texts = [t for t in texts if t]
    if not texts:
        raise UsageError("give texts to embed, or --file")
    return texts


def _body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": args.kind, "model": args.model}
    if args.kind == "generate":
        messages = []
        if args.system:
            messages.append({"role": "system", "content": _read_arg(args.system, "--system")})
        messages.append({"role": "user", "content": _read_arg(args.prompt, "prompt")})
        body |= {"messages": messages, "max_tokens": args.max_tokens,
                 "temperature": args.temperature}  # fmt: skip
        body |= generation_options(
            max_completion_tokens=args.max_completion_tokens, stop=args.stop, seed=args.seed,
            top_p=args.top_p, json_object=args.json_object,
            reasoning_effort=args.reasoning_effort,
            provider_options=_provider_options(args.provider_option),
        )  # fmt: skip
    elif args.kind == "extract":
        try:
            body["schema"] = json.loads(_read_arg(args.schema, "--schema"))
        except ValueError as exc:
            raise UsageError(f"--schema is not JSON: {exc}") from None
        instructions = args.instructions and _read_arg(args.instructions, "--instructions")
        body |= {"text": _read_arg(args.text, "text"), "instructions": instructions}
    else:
        body |= {"input": _read_texts(args), "dimensions": args.dimensions}
    body |= {"run_at": args.run_at, "delay_s": args.delay, "priority": args.priority}
    return {k: v for k, v in body.items() if v is not None}


def _provider_options(pairs: list[str]) -> dict[str, Any] | None:
    """``--provider-option KEY=JSON`` (a value that is not JSON is a string)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--provider-option {pair}: give KEY=JSON")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out or None


@_guarded
def cmd_submit(args: argparse.Namespace) -> int:
    """Submit a job; print its id (or the job as JSON), or with --follow its output."""
    body = _body(args)
    output = getattr(args, "output", None)
    with _client(args) as client:
        job = client.submit(body, idempotency_key=args.idempotency_key)
        if args.json:
            print(render.as_json(job), flush=True)
        if not (args.follow or output):
            if not args.json:
                print(job.id)
            return EXIT_OK
        if not args.json:
            print(f"job {job.id}", file=sys.stderr, flush=True)
        return _follow(client, job.id, job.kind, after=0, json_lines=args.json, output=output)


@_guarded
def cmd_follow(args: argparse.Namespace) -> int:
    """Follow a job to its end."""
    with _client(args) as client:
        job = client.get(args.job_id, vectors=False)
        return _follow(client, job.id, job.kind, after=args.after, json_lines=args.json,
                       output=args.output)  # fmt: skip


def _follow(
    client: Client, job_id: str, kind: str, *, after: int, json_lines: bool, output: str | None
) -> int:
    if output and kind != "embed":
        raise UsageError(f"--output is for embedding jobs; this one is {kind}")
    out, err = sys.stdout, sys.stderr
    outcome = follow_job(
        client, job_id, kind, out=out, err=err, out_tty=_is_tty(out), err_tty=_is_tty(err),
        after=after, json_lines=json_lines,
    )  # fmt: skip
    if outcome.status is None:
        # Nothing after the cursor (the job had ended there): the row tells the end.
        job = client.get(job_id, vectors=False)
        outcome.status = job.status
        outcome.result = job.result
    if not json_lines:
        _print_outcome(kind, outcome, out, err)
    if output and outcome.status == "succeeded":
        _write_output(client, job_id, Path(output), err)
    return EXIT_OK if outcome.status == "succeeded" else EXIT_JOB_FAILED


def _print_outcome(kind: str, outcome: Outcome, out: TextIO, err: TextIO) -> None:
    result = outcome.result or {}
    if kind == "generate" and not _is_tty(out):
        # The final text, once; a job that did not succeed leaves what its last attempt
        # wrote (a cancelled job's partial output), if anything.
        text = result.get("text") if outcome.status == "succeeded" else None
        if not isinstance(text, str):
            text = outcome.text.text
        if text or outcome.status == "succeeded":
            print(text, file=out)
    elif kind == "extract" and "data" in result:
        print(json.dumps(result["data"], indent=2, ensure_ascii=False), file=out)
    elif kind == "embed" and "count" in result:
        print(f"{result['count']} vectors of {result['dimensions']} dimensions", file=out)
    if outcome.status != "succeeded":
        print(f"job {outcome.status}", file=err)


def _write_output(client: Client, job_id: str, path: Path, err: TextIO) -> None:
    try:
        embeddings = client.embeddings(job_id)
    except NoResult as exc:
        raise UsageError(str(exc)) from None
    model = client.get(job_id, vectors=False).model
    try:
        written = write_vectors(path, embeddings, model=model)
    except OSError as exc:
        raise UsageError(f"--output: cannot write {path}: {exc.strerror}") from None
    print(f"wrote {embeddings.count} vectors to {path} ({written})", file=err)


@_guarded
def cmd_jobs(args: argparse.Namespace) -> int:
    """List jobs, newest first: one page, or --all of them."""
    filters: dict[str, Any] = {
        "metadata": _metadata_filters(args.metadata), "order": args.order,
        "created_after": args.created_after, "created_before": args.created_before,
    }  # fmt: skip
    with _client(args) as client:
        if args.all:
            jobs: Sequence[JobPublic] = list(
                client.iter_jobs(
                    status=args.status, kind=args.kind, page_size=args.limit, **filters
                )
            )
            next_cursor = None
        else:
            page = client.jobs(
                status=args.status, kind=args.kind, limit=args.limit, cursor=args.cursor,
                **filters,
            )  # fmt: skip
            jobs, next_cursor = page.data, page.next_cursor
    if args.json:
        data = [job.model_dump(mode="json") for job in jobs]
        print(json.dumps({"data": data, "next_cursor": next_cursor}, ensure_ascii=False))
        return EXIT_OK
    print(render.jobs_table(jobs))
    if next_cursor:
        print(f"more: aijobs jobs --cursor {next_cursor}  (or --all)", file=sys.stderr)
    return EXIT_OK


def _metadata_filters(pairs: list[str]) -> dict[str, str] | None:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--metadata {pair}: give KEY=VALUE")
        out[key] = value
    return out or None


@_guarded
def cmd_show(args: argparse.Namespace) -> int:
    """Show one job (an embedding job's vectors only with --vectors)."""
    with _client(args) as client:
        job = client.get(args.job_id, vectors=args.vectors)
    print(render.as_json(job, indent=2) if args.json else render.job_text(job))
    return EXIT_OK


@_guarded
def cmd_cancel(args: argparse.Namespace) -> int:
    """Cancel a job."""
    with _client(args) as client:
        answer = client.cancel(args.job_id)
    print(render.as_json(answer) if args.json else render.cancel_text(answer))
    return EXIT_OK


@_guarded
def cmd_retry(args: argparse.Namespace) -> int:
    """Run a failed or cancelled job again; print the new job's id (or follow it)."""
    with _client(args) as client:
        job = client.retry(args.job_id)
        if args.json:
            print(render.as_json(job), flush=True)
        elif not args.follow:
            print(job.id)
        if not args.follow:
            return EXIT_OK
        if not args.json:
            print(f"job {job.id}", file=sys.stderr, flush=True)
        return _follow(client, job.id, job.kind, after=0, json_lines=args.json, output=None)


@_guarded
def cmd_delete(args: argparse.Namespace) -> int:
    """Delete a job and its data."""
    with _client(args) as client:
        client.delete(args.job_id)
    print(f"deleted {args.job_id}", file=sys.stderr)
    return EXIT_OK


@_guarded
def cmd_usage(args: argparse.Namespace) -> int:
    """Your usage and cost over a window, and your budgets."""
    with _client(args) as client:
        report = client.usage(start=args.start, end=args.end, group_by=args.group_by)
    print(report.model_dump_json(by_alias=True) if args.json else render.usage_text(report))
    return EXIT_OK
