"""Request plumbing shared by the OpenAI routes: parsing, auth, rate limiting, faults."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from aijobs.devtools.simulator.errors import (
    QUOTA_MESSAGE,
    SERVER_ERROR_MESSAGE,
    error_response,
    invalid_request,
    rate_limit_response,
)
from aijobs.devtools.simulator.faults import Endpoint, FaultSpec, JsonMode
from aijobs.devtools.simulator.state import SimulatorState
from aijobs.devtools.simulator.streaming import sleep_unless_disconnected


class Rejected(Exception):
    """Stops handling a request and answers with ``response`` (an OpenAI error)."""

    def __init__(self, response: Response) -> None:
        """Carry the error response."""
        super().__init__(response.status_code)
        self.response = response


def state_of(request: Request) -> SimulatorState:
    """The simulator state of the app serving ``request``."""
    return request.app.state.sim


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


#: An endpoint's handler: the request, the simulator state and the JSON body.
Handler = Callable[[Request, SimulatorState, dict[str, Any]], Awaitable[Response]]


async def serve(request: Request, endpoint: Endpoint, handler: Handler) -> Response:
    """Read the JSON body, count the request (with its model), and run ``handler``;
    a ``Rejected`` anywhere becomes its OpenAI-shaped error answer."""
    state = state_of(request)
    started = time.time()
    try:
        body = await read_json_object(request)
    except Rejected as rejected:
        state.stats.record_request(endpoint, None, started, auth_kind(request))
        return rejected.response
    model = body.get("model")
    state.stats.record_request(
        endpoint, model if isinstance(model, str) else None, started, auth_kind(request)
    )
    try:
        return await handler(request, state, body)
    except Rejected as rejected:
        return rejected.response


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


def admit(
    state: SimulatorState, endpoint: Endpoint, model: str, json_mode: JsonMode
) -> FaultSpec | None:
    """Apply the rate limiter and the fault queue; raise ``Rejected`` with an error answer.

    Returns the fault still to apply while answering (cut, hang, refusal, ...), if any.
    """
    cfg = state.config
    stats = state.stats
    now = time.monotonic()
    wait = stats.window.wait_needed(now, cfg.rpm_limit, cfg.rpm_window_s)
    if wait is not None:
        stats.rate_limited += 1
        raise Rejected(rate_limit_response(wait, cfg.rpm_limit))
    fault = state.faults.take(endpoint, model, json_mode)
    if fault is not None:
        stats.faults_served[fault.kind] += 1
        if fault.kind == "rate_limit":
            limit = cfg.rpm_limit or 500
            raise Rejected(rate_limit_response(fault.retry_after_s, limit, fault.headers))
        if fault.kind == "insufficient_quota":
            message = fault.message or QUOTA_MESSAGE
            code = fault.code or "insufficient_quota"
            raise Rejected(error_response(429, message, "insufficient_quota", None, code))
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
    return fault


async def pause(request: Request, seconds: float) -> bool:
    """Sleep; ``False`` if the client went away meanwhile."""
    if seconds <= 0:
        return True
    return await sleep_unless_disconnected(request.receive, seconds)
