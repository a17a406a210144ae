"""Request plumbing shared by the OpenAI routes: parsing, auth, logging, rate limiting,
scripted faults and chaos draws."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from aijobs.devtools.simulator.chaos import ChaosDraw
from aijobs.devtools.simulator.errors import (
    QUOTA_MESSAGE,
    SERVER_ERROR_MESSAGE,
    SERVER_ERROR_MESSAGES,
    error_response,
    invalid_request,
    rate_limit_response,
)
from aijobs.devtools.simulator.faults import Endpoint, FaultSpec, JsonMode
from aijobs.devtools.simulator.request_keys import request_key_for_inputs, request_key_for_messages
from aijobs.devtools.simulator.request_log import RequestRecord
from aijobs.devtools.simulator.state import SimulatorState
from aijobs.devtools.simulator.streaming import SimulatedDisconnect, sleep_unless_disconnected

_UNLIMITED_RPM = 500
"""``x-ratelimit-limit-requests`` of injected 429s when the simulator has no RPM limit."""


class Rejected(Exception):
    """Stops handling a request and answers with ``response`` (an OpenAI error)."""

    def __init__(self, response: Response) -> None:
        """Carry the error response."""
        super().__init__(response.status_code)
        self.response = response


def state_of(request: Request) -> SimulatorState:
    """The simulator state of the app serving ``request``."""
    sim: SimulatorState = request.app.state.sim
    return sim


def auth_kind(request: Request) -> str:
    """``bearer``, ``other`` or ``missing``: which Authorization header was sent."""
    header = request.headers.get("authorization")
    if header is None:
        return "missing"
    return "bearer" if header.lower().startswith("bearer ") else "other"


async def read_json_object(request: Request) -> dict[str, Any]:
    """The JSON object body, or ``Rejected`` with OpenAI's 400 for unparsable JSON."""
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise Rejected(
            invalid_request(
                "We could not parse the JSON body of your request. (HINT: This likely means "
                "you aren't using your HTTP library correctly. The OpenAI API expects a JSON "
                "payload, but what was sent was not valid JSON.)"
            )
        ) from None
    if not isinstance(body, dict):
        raise Rejected(invalid_request("The request body must be a JSON object."))
    return body


#: An endpoint's handler: the request, the simulator state, the JSON body and its log record.
Handler = Callable[[Request, SimulatorState, dict[str, Any], RequestRecord], Awaitable[Response]]


def _key_of(endpoint: Endpoint, body: dict[str, Any]) -> str | None:
    if endpoint == "chat":
        messages = body.get("messages")
        return request_key_for_messages(messages) if isinstance(messages, list) else None
    inputs = body.get("input")
    return request_key_for_inputs(inputs) if isinstance(inputs, str | list) else None


async def serve(request: Request, endpoint: Endpoint, handler: Handler) -> Response:
    """Read the JSON body, count and log the request, and run ``handler``;
    a ``Rejected`` anywhere becomes its OpenAI-shaped error answer."""
    state = state_of(request)
    started = time.time()
    try:
        body = await read_json_object(request)
    except Rejected as rejected:
        state.stats.record_request(endpoint, None, started, auth_kind(request))
        record = state.log.open(endpoint, None, None, False, started)
        record.decide("invalid_request", None)
        record.finish("error", rejected.response.status_code)
        return rejected.response
    raw_model = body.get("model")
    model = raw_model if isinstance(raw_model, str) else None
    state.stats.record_request(endpoint, model, started, auth_kind(request))
    stream = endpoint == "chat" and bool(body.get("stream"))
    record = state.log.open(endpoint, _key_of(endpoint, body), model, stream, started)
    try:
        response = await handler(request, state, body, record)
    except Rejected as rejected:
        if record.outcome is None:
            record.decide("invalid_request", None)
        record.finish("error", rejected.response.status_code)
        return rejected.response
    except Exception:
        if record.outcome is None:
            record.decide("internal_error", None)
        record.finish("error", 500)
        raise
    return RecordedResponse(response, record)


class RecordedResponse(Response):
    """Wraps an answer to note its status and how the exchange ended in the request log."""

    def __init__(self, inner: Response, record: RequestRecord) -> None:
        """Wrap ``inner``; nothing is sent until the server calls the response."""
        self.inner = inner
        self.record = record
        self.status_code = inner.status_code
        self.background = None
        self.body = b""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send ``inner``, recording the status line and the end of the body."""
        record = self.record

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start" and record.end == "open":
                record.status = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                ok = record.status is not None and record.status < 400
                record.finish("completed" if ok else "error")

        try:
            await self.inner(scope, receive, recording_send)
        except SimulatedDisconnect:
            record.finish("dropped")
            raise
        except asyncio.CancelledError:
            record.finish("aborted")
            raise
        except Exception:
            record.finish("client_closed")
            raise
        # Returned without the end of the body: the stream saw the client go.
        record.finish("client_closed")


def client_left(record: RequestRecord) -> Response:
    """Log that the client went away before the answer and return a placeholder 408."""
    record.finish("client_closed")
    return Response(status_code=408)


def missing_param(param: str) -> Rejected:
    """400 ``missing_required_parameter`` naming ``param``."""
    return Rejected(
        invalid_request(
            f"Missing required parameter: '{param}'.", param, "missing_required_parameter"
        )
    )


def response_headers(state: SimulatorState, request_id: str) -> dict[str, str]:
    """Headers of a successful answer (``x-request-id``, rate-limit headers when limited)."""
    headers = {"x-request-id": request_id}
    limit = state.config.rpm_limit
    if limit:
        headers["x-ratelimit-limit-requests"] = str(limit)
        headers["x-ratelimit-remaining-requests"] = str(state.stats.window.remaining(limit))
    return headers


@dataclass(frozen=True, slots=True)
class Admission:
    """What admission decided for a request that goes on to be answered.

    Attributes:
        fault: the scripted fault still to apply while answering (cut, hang, refusal, ...).
        chaos: the request's chaos draw when no scripted fault was taken (chaos on only).
    """

    fault: FaultSpec | None
    chaos: ChaosDraw | None

    @property
    def odd_text(self) -> bool:
        """Whether generated text should be the odd kind."""
        return self.chaos is not None and self.chaos.odd_text

    def answer_fault(self, record: RequestRecord, content_chunks: int) -> FaultSpec | None:
        """The fault shaping an answer of ``content_chunks`` streamed chunks (scripted, or the
        chaos draw's ``cut``/``trickle``/``stall``), with its parameters noted in ``record``."""
        fault = self.fault
        if fault is None and self.chaos is not None:
            fault = self.chaos.as_fault(content_chunks)
        if fault is not None:
            record.detail.update(fault.detail(record.stream))
        return fault


def admit(
    state: SimulatorState,
    endpoint: Endpoint,
    model: str,
    json_mode: JsonMode,
    record: RequestRecord,
) -> Admission:
    """Apply the rate limiter, the fault queue and the chaos draw, noting the outcome in
    ``record``; raise ``Rejected`` with an error answer.

    Every request that gets here takes the next chaos draw, even if the limiter or a scripted
    fault decides its outcome, so scripted faults do not shift the draws of later requests.
    """
    cfg = state.config
    stats = state.stats
    now = time.monotonic()
    chaos = state.dice.roll(record.key)
    wait = stats.window.wait_needed(now, cfg.rpm_limit, cfg.rpm_window_s)
    if wait is not None:
        stats.rate_limited += 1
        record.decide("rate_limit", "rpm_limit", retry_after_s=round(wait, 3))
        raise Rejected(rate_limit_response(wait, cfg.rpm_limit))
    fault = state.faults.take(endpoint, model, json_mode)
    if fault is not None:
        chaos = None
        stats.faults_served[fault.kind] += 1
        record.decide(fault.kind, "fault", **fault.detail(record.stream))
        if fault.kind == "rate_limit":
            limit = cfg.rpm_limit or _UNLIMITED_RPM
            raise Rejected(rate_limit_response(fault.retry_after_s, limit, fault.headers))
        if fault.kind == "insufficient_quota":
            message = fault.message or QUOTA_MESSAGE
            code = fault.code or "insufficient_quota"
            raise Rejected(error_response(429, message, "insufficient_quota", None, code))
    elif chaos is not None and chaos.kind is not None:
        stats.chaos_served[chaos.kind] += 1
        record.decide(chaos.kind, "chaos")
        if chaos.kind == "rate_limit":
            record.detail["retry_after_s"] = chaos.retry_after_s
            limit = cfg.rpm_limit or _UNLIMITED_RPM
            raise Rejected(rate_limit_response(chaos.retry_after_s, limit))
    else:
        record.decide("ok", None)
    stats.window.admit(now, cfg.rpm_window_s)
    if fault is not None:
        if fault.kind == "bad_request":
            raise Rejected(
                error_response(
                    fault.status or 400,
                    fault.message or "Invalid request (simulated fault).",
                    "invalid_request_error",
                    fault.param,
                    fault.code,
                )
            )
        if fault.kind == "server_error":
            raise Rejected(
                error_response(
                    fault.status or 500,
                    fault.message or SERVER_ERROR_MESSAGE,
                    "server_error",
                    None,
                    fault.code,
                )
            )
    elif chaos is not None and chaos.kind == "server_error":
        record.detail["status"] = chaos.status
        message = SERVER_ERROR_MESSAGES[chaos.status]
        raise Rejected(error_response(chaos.status, message, "server_error"))
    return Admission(fault, chaos)


def note_odd_text(state: SimulatorState, record: RequestRecord) -> None:
    """Log and count that a request's answer carries odd text."""
    record.odd_text = True
    state.stats.chaos_served["odd_text"] += 1


async def pause(request: Request, seconds: float) -> bool:
    """Sleep; ``False`` if the client went away meanwhile."""
    if seconds <= 0:
        return True
    return await sleep_unless_disconnected(request.receive, seconds)
