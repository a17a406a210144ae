"""The ``aijobs`` commands that talk to a running API: submit, jobs, show, follow, cancel.

They read AIJOBS_URL (default http://127.0.0.1:8000) and AIJOBS_API_KEY, or --url/--key.
Exit codes: 0 the job succeeded (or the command did what it says), 1 the job failed or
was cancelled, 2 bad usage, 3 the API refused or could not be reached.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

import httpx

from aijobs.client import AijobsError, Client, JobEvent

EXIT_OK, EXIT_JOB_FAILED, EXIT_USAGE, EXIT_API = 0, 1, 2, 3


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the API-client commands on the ``aijobs`` parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=None, help="API base URL (AIJOBS_URL)")
    common.add_argument("--key", default=None, help="API key (AIJOBS_API_KEY)")

    submit = sub.add_parser("submit", help="submit a job", parents=[common])
    kinds = submit.add_subparsers(dest="kind", required=True)
    gen = kinds.add_parser("generate", help="a chat generation", parents=[common])
    gen.add_argument("prompt")
    gen.add_argument("--model", required=True)
    gen.add_argument("--system", default=None, help="a system message")
    gen.add_argument("--max-tokens", type=int, default=None)
    gen.add_argument("--temperature", type=float, default=None)
    ext = kinds.add_parser("extract", help="structured extraction", parents=[common])
    ext.add_argument("text", help="the text, or @FILE")
    ext.add_argument("--model", required=True)
    ext.add_argument("--schema", required=True, help="a JSON Schema, or @FILE")
    ext.add_argument("--instructions", default=None)
    emb = kinds.add_parser("embed", help="embeddings", parents=[common])
    emb.add_argument("texts", nargs="*", help="texts (or --file)")
    emb.add_argument("--file", default=None, help="one text per line")
    emb.add_argument("--model", required=True)
    emb.add_argument("--dimensions", type=int, default=None)
    for parser in (gen, ext, emb):
        parser.add_argument("--follow", action="store_true", help="stream the job to the end")
        parser.set_defaults(func=cmd_submit)

    jobs = sub.add_parser("jobs", help="list your jobs", parents=[common])
    jobs.add_argument("--status", default=None)
    jobs.add_argument("--kind", default=None)
    jobs.add_argument("--limit", type=int, default=20)
    jobs.set_defaults(func=cmd_jobs)
    show = sub.add_parser("show", help="show a job as JSON", parents=[common])
    show.add_argument("job_id")
    show.set_defaults(func=cmd_show)
    follow = sub.add_parser("follow", help="stream a job's events to the end", parents=[common])
    follow.add_argument("job_id")
    follow.add_argument("--after", type=int, default=0)
    follow.set_defaults(func=cmd_follow)
    cancel = sub.add_parser("cancel", help="cancel a job", parents=[common])
    cancel.add_argument("job_id")
    cancel.set_defaults(func=cmd_cancel)


def _client(args: argparse.Namespace) -> Client:
    return Client(args.url, args.key)


def _read_arg(value: str) -> str:
    return Path(value[1:]).read_text() if value.startswith("@") else value


def _guarded(run: Any) -> Any:
    """Map API and network errors to a message and exit code 3."""

    def wrapper(args: argparse.Namespace) -> int:
        try:
            return int(run(args))
        except AijobsError as exc:
            print(f"aijobs: {exc.detail} (HTTP {exc.status})", file=sys.stderr)
            return EXIT_API
        except httpx.HTTPError as exc:
            print(f"aijobs: cannot reach the API: {exc}", file=sys.stderr)
            return EXIT_API

    return wrapper


@_guarded
def cmd_submit(args: argparse.Namespace) -> int:
    """Submit a job; print its id, or with --follow its output."""
    body: dict[str, Any] = {"kind": args.kind, "model": args.model}
    if args.kind == "generate":
        messages = [{"role": "system", "content": args.system}] if args.system else []
        body["messages"] = [*messages, {"role": "user", "content": args.prompt}]
        body |= {"max_tokens": args.max_tokens, "temperature": args.temperature}
    elif args.kind == "extract":
        try:
            body["schema"] = json.loads(_read_arg(args.schema))
        except ValueError as exc:
            print(f"aijobs: --schema is not JSON: {exc}", file=sys.stderr)
            return EXIT_USAGE
        body |= {"text": _read_arg(args.text), "instructions": args.instructions}
    else:
        texts = list(args.texts)
        if args.file:
            texts += [line for line in Path(args.file).read_text().splitlines() if line]
        if not texts:
            print("aijobs: give texts to embed, or --file", file=sys.stderr)
            return EXIT_USAGE
        body |= {"input": texts, "dimensions": args.dimensions}
    body = {k: v for k, v in body.items() if v is not None}
    with _client(args) as client:
        job = client.submit(body)
        if not args.follow:
            print(job["id"])
            return EXIT_OK
        print(f"job {job['id']}", file=sys.stderr)
        return follow_job(client, job["id"], job["kind"])


@_guarded
def cmd_follow(args: argparse.Namespace) -> int:
    """Stream a job's events to the end."""
    with _client(args) as client:
        job = client.get(args.job_id)
        return follow_job(client, job["id"], job["kind"], after=args.after)


def follow_job(
    client: Client, job_id: str, kind: str, *, after: int = 0, out: TextIO | None = None
) -> int:
    """Print a job as it runs: text for generate, JSON for extract, progress for embed."""
    out = out or sys.stdout
    err = sys.stderr
    status = ""
    for event in client.events(job_id, after=after):
        status = _show(event, kind, out, err) or status
    job = client.get(job_id) if kind == "embed" else None
    if status == "succeeded" and job is not None:
        result = job["result"]
        print(f"{result['count']} vectors of {result['dimensions']} dimensions", file=out)
    return EXIT_OK if status == "succeeded" else EXIT_JOB_FAILED


def _show(event: JobEvent, kind: str, out: TextIO, err: TextIO) -> str | None:
    data = event.data
    if event.event == "delta" and kind == "generate":
        out.write(data["text"])
        out.flush()
    elif event.event == "reset":
        what = "repair round" if "round" in data else "attempt"
        print(f"\n[{what} {data.get('round', data['attempt'])} starts over]", file=err)
    elif event.event == "progress":
        done, total = data["done"], data["total"]
        filled = int(30 * done / max(total, 1))
        end = "\n" if done >= total else ""
        print(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total}", end=end, file=err)
    elif event.event == "status" and data.get("status") == "retrying":
        print(f"\n[retrying in {data.get('wait_s')}s: {data.get('reason')}]", file=err)
    elif event.event == "result" and kind == "generate":
        print(file=out)
    elif event.event == "result" and kind == "extract":
        print(json.dumps(data.get("data"), indent=2, ensure_ascii=False), file=out)
    elif event.event == "error":
        print(f"\nfailed: {data['code']}: {data['message']}", file=err)
    elif event.event == "done":
        if data["status"] != "succeeded":
            print(f"job {data['status']}", file=err)
        return str(data["status"])
    return None


@_guarded
def cmd_jobs(args: argparse.Namespace) -> int:
    """List jobs, newest first."""
    with _client(args) as client:
        page = client.jobs(status=args.status, kind=args.kind, limit=args.limit)
    for job in page["data"]:
        print(f"{job['id']}  {job['kind']:<8}  {job['status']:<9}  {job['created_at']}  "
              f"{job['model']}")  # fmt: skip
    return EXIT_OK


@_guarded
def cmd_show(args: argparse.Namespace) -> int:
    """Print one job as JSON."""
    with _client(args) as client:
        print(json.dumps(client.get(args.job_id), indent=2, ensure_ascii=False))
    return EXIT_OK


@_guarded
def cmd_cancel(args: argparse.Namespace) -> int:
    """Cancel a job."""
    with _client(args) as client:
        answer = client.cancel(args.job_id)
    print(f"{answer['detail']} (status: {answer['job']['status']})")
    return EXIT_OK
