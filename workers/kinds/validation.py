"""Checking an answer against its schema where a slow check cannot stop anything else.

A worker process runs a hundred jobs on threads that share one interpreter lock; a
validation that ran for minutes in one of them would freeze every stream, the event
flusher and lease renewal with it. Schemas are bounded at submit (linear-time patterns,
a limit on their $ref expansion), and on top of that each check runs in a short-lived
child process (forked from a clean fork server, ~10 ms) with a deadline: past it the
child is killed and the answer counts as unverifiable, while every other job streams on.
"""

from __future__ import annotations

import json
import multiprocessing
import threading
from multiprocessing.connection import Connection
from typing import Any

from aijobs.errors import ErrorCode, JobFailed

_context_lock = threading.Lock()
_context: Any = None


def _mp_context() -> Any:
    global _context
    with _context_lock:
        if _context is None:
            methods = multiprocessing.get_all_start_methods()
            method = "forkserver" if "forkserver" in methods else "spawn"
            context = multiprocessing.get_context(method)
            if method == "forkserver":
                context.set_forkserver_preload(["aijobs.kinds.schema"])
            _context = context
        return _context


def _child(conn: Connection, value_json: str, schema_json: str) -> None:
    from aijobs.kinds.schema import validation_error

    try:
        conn.send(("ok", validation_error(json.loads(value_json), json.loads(schema_json))))
    except Exception as exc:  # reported to the parent, which decides
        conn.send(("error", f"{type(exc).__name__}: {exc}"[:300]))
    finally:
        conn.close()


def check_answer(value: Any, schema: dict[str, Any], *, timeout_s: float) -> str | None:
    """Why ``value`` does not satisfy ``schema`` (None if it does), checked in a child
    process. Raises ``JobFailed`` (``invalid_output``) if the check takes over
    ``timeout_s`` or breaks."""
    context = _mp_context()
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(
        target=_child,
        args=(sender, json.dumps(value), json.dumps(schema)),
        daemon=True,
        name="aijobs-validate",
    )
    process.start()
    sender.close()
    try:
        if not receiver.poll(timeout_s):
            raise JobFailed(
                ErrorCode.INVALID_OUTPUT,
                f"checking the answer against the schema took longer than {timeout_s:g}s",
                retryable=False,
            )
        outcome, detail = receiver.recv()
    except EOFError:
        raise JobFailed(
            ErrorCode.INVALID_OUTPUT, "the answer could not be checked (the check died)",
            retryable=False,
        ) from None  # fmt: skip
    finally:
        receiver.close()
        if process.is_alive():
            process.kill()
        process.join(5)
    if outcome != "ok":
        raise JobFailed(ErrorCode.INVALID_OUTPUT, f"the answer could not be checked ({detail})",
                        retryable=False)  # fmt: skip
    return detail if detail is None else str(detail)
