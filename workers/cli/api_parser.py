"""The arguments of the commands that talk to a running API. Building them imports
nothing but argparse: each command's code is imported only when it runs, so
``aijobs --help`` stays fast."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

Command = Callable[[argparse.Namespace], int]


def lazy(name: str) -> Command:
    """The command ``name`` of ``aijobs.cli.api_commands``, imported when it runs."""

    def run(args: argparse.Namespace) -> int:
        module = importlib.import_module("aijobs.cli.api_commands")
        command: Command = getattr(module, name)
        return command(args)

    return run


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register submit, jobs, show, follow, cancel, retry and delete on the ``aijobs``
    parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=None, help="API base URL (default: AIJOBS_URL)")
    common.add_argument(
        "--key", default=None, help="API key (default: AIJOBS_API_KEY, which ps does not show)"
    )
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON, for scripts")

    submit = sub.add_parser(
        "submit", help="submit a job", parents=[common],
        description="Submit a job and print its id (or, with --follow, its output).",
    )  # fmt: skip
    kinds = submit.add_subparsers(dest="kind", required=True, metavar="KIND")
    gen = kinds.add_parser(
        "generate", help="a chat generation, streamed", parents=[common, as_json],
        description="A chat generation. With --follow the text streams to a terminal; "
        "into a pipe, the final text is printed once, when the job ends.",
    )  # fmt: skip
    gen.add_argument("prompt", help="the user message, or @FILE")
    gen.add_argument("--model", required=True)
    gen.add_argument("--system", default=None, help="a system message, or @FILE")
    gen.add_argument("--max-tokens", type=int, default=None)
    gen.add_argument("--temperature", type=float, default=None)
    gen.add_argument("--max-completion-tokens", type=int, default=None,
                     help="the answer's cap, reasoning included (reasoning models)")  # fmt: skip
    gen.add_argument("--stop", action="append", default=None, metavar="TEXT",
                     help="where the answer stops (repeat, up to 4)")  # fmt: skip
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--top-p", type=float, default=None)
    gen.add_argument("--json-object", action="store_true",
                     help='response_format {"type": "json_object"}')  # fmt: skip
    gen.add_argument("--reasoning-effort", choices=("minimal", "low", "medium", "high"),
                     default=None)  # fmt: skip
    gen.add_argument("--provider-option", action="append", default=[], metavar="KEY=JSON",
                     help="a provider-specific field, sent as it is (repeat): top_k=5")  # fmt: skip
    ext = kinds.add_parser(
        "extract", help="JSON that matches a schema", parents=[common, as_json],
        description="Structured extraction: JSON from TEXT that matches the JSON Schema.",
    )  # fmt: skip
    ext.add_argument("text", help="the text, or @FILE")
    ext.add_argument("--model", required=True)
    ext.add_argument("--schema", required=True, help="a JSON Schema, or @FILE")
    ext.add_argument("--instructions", default=None, help="a system prompt, or @FILE")
    emb = kinds.add_parser(
        "embed", help="embeddings", parents=[common, as_json],
        description="Embeddings of texts. With --follow it shows progress and prints the "
        "count and dimensions; the vectors are downloaded only with --output.",
    )  # fmt: skip
    emb.add_argument("texts", nargs="*", help="texts (or --file)")
    emb.add_argument("--file", default=None, help="one text per line (- for stdin)")
    emb.add_argument("--model", required=True)
    emb.add_argument("--dimensions", type=int, default=None)
    _add_output(emb)
    for parser in (gen, ext, emb):
        parser.add_argument("--follow", action="store_true", help="follow the job to its end")
        when = parser.add_mutually_exclusive_group()
        when.add_argument(
            "--run-at", default=None, metavar="TIME",
            help="start no earlier than this RFC 3339 time (2030-01-01T09:00:00Z)",
        )  # fmt: skip
        when.add_argument(
            "--delay", type=float, default=None, metavar="SECONDS",
            help="start no earlier than this many seconds from now",
        )  # fmt: skip
        parser.add_argument(
            "--priority", type=int, default=None, choices=range(10), metavar="0-9",
            help="9 runs first among your waiting jobs (default 5)",
        )  # fmt: skip
        parser.add_argument(
            "--idempotency-key", default=None,
            help="the same key returns the same job (default: a fresh one per command)",
        )  # fmt: skip
        parser.set_defaults(func=lazy("cmd_submit"))

    jobs = sub.add_parser(
        "jobs", help="list your jobs", parents=[common, as_json],
        description="Your jobs, newest first.",
    )  # fmt: skip
    jobs.add_argument("--status", default=None, help="queued, running, succeeded ...")
    jobs.add_argument("--kind", default=None, help="generate, extract or embed")
    jobs.add_argument("--limit", type=int, default=20, help="jobs per page (at most 100)")
    jobs.add_argument("--cursor", default=None, help="the page after this cursor")
    jobs.add_argument("--all", action="store_true", help="every page, not just the first")
    jobs.add_argument(
        "--metadata", action="append", default=[], metavar="KEY=VALUE",
        help="only jobs whose metadata has KEY with VALUE (repeat for more)",
    )  # fmt: skip
    jobs.add_argument("--created-after", default=None, metavar="TIME", help="RFC 3339")
    jobs.add_argument("--created-before", default=None, metavar="TIME", help="RFC 3339")
    jobs.add_argument(
        "--order", choices=("created", "run_at"), default=None,
        help="created: newest first (default); run_at: scheduled jobs, soonest first",
    )  # fmt: skip
    jobs.set_defaults(func=lazy("cmd_jobs"))

    show = sub.add_parser(
        "show", help="show a job", parents=[common, as_json],
        description="One job: status, timings, usage and result (an embedding job's "
        "vectors only with --vectors).",
    )  # fmt: skip
    show.add_argument("job_id")
    show.add_argument("--vectors", action="store_true", help="include an embedding job's vectors")
    show.set_defaults(func=lazy("cmd_show"))

    follow = sub.add_parser(
        "follow", help="follow a job's events to its end", parents=[common],
        description="Follow a job to its end, as submit --follow does; it resumes by itself "
        "after a dropped connection or an API restart.",
    )  # fmt: skip
    follow.add_argument("job_id")
    follow.add_argument("--after", type=int, default=0, help="start after this event id")
    follow.add_argument("--json", action="store_true", help="every event as a JSON line")
    _add_output(follow)
    follow.set_defaults(func=lazy("cmd_follow"))

    cancel = sub.add_parser(
        "cancel", help="cancel a job", parents=[common, as_json],
        description="Cancel a job: a waiting one never runs, a running one stops at its "
        "next chunk, a finished one is left as it is.",
    )  # fmt: skip
    cancel.add_argument("job_id")
    cancel.set_defaults(func=lazy("cmd_cancel"))

    retry = sub.add_parser(
        "retry", help="run a failed or cancelled job again", parents=[common, as_json],
        description="Run a failed or cancelled job again, as a new job (printed) whose "
        "metadata's replay_of names the old one.",
    )  # fmt: skip
    retry.add_argument("job_id")
    retry.add_argument("--follow", action="store_true", help="follow the new job to its end")
    retry.set_defaults(func=lazy("cmd_retry"))

    delete = sub.add_parser(
        "delete", help="delete a job and its data", parents=[common],
        description="Delete a job: its input, output and events are scrubbed now, and it "
        "is gone. A waiting one is cancelled; a running one is cancelled and waited for.",
    )  # fmt: skip
    delete.add_argument("job_id")
    delete.set_defaults(func=lazy("cmd_delete"))

    usage = sub.add_parser(
        "usage", help="your tokens, jobs and cost, and your budgets", parents=[common, as_json],
        description="Your usage in [--from, --to) (default: this month so far, UTC): "
        "prompt, completion and cached tokens, jobs, attempts and cost; every attempt counts.",
    )  # fmt: skip
    usage.add_argument("--from", dest="start", default=None, metavar="TIME", help="RFC 3339")
    usage.add_argument("--to", dest="end", default=None, metavar="TIME", help="RFC 3339")
    usage.add_argument("--group-by", choices=("model", "day"), default=None,
                       help="one row per model or per UTC day")  # fmt: skip
    usage.set_defaults(func=lazy("cmd_usage"))


def _add_output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output", "-o", default=None, metavar="FILE",
        help="write an embedding job's vectors to FILE when it ends: .npy (float32) if the "
        "name ends in .npy, else JSON with one base64 float32 string per vector",
    )  # fmt: skip
