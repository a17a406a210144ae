"""The ``/_sim`` admin API: faults, stats, the request log, reset and run-time config."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from aijobs.devtools.simulator.admission import Rejected, read_json_object, state_of
from aijobs.devtools.simulator.config import SimulatorConfig
from aijobs.devtools.simulator.errors import invalid_request
from aijobs.devtools.simulator.faults import FaultSpec


async def add_faults(request: Request) -> Response:
    """``POST /_sim/faults`` with ``{"faults": [spec, ...]}``: queue the specs in order."""
    state = state_of(request)
    try:
        body = await read_json_object(request)
        raw = body.get("faults")
        if not isinstance(raw, list):
            raise ValueError('body must be {"faults": [spec, ...]}')
        specs = [FaultSpec.from_dict(item) for item in raw]
    except Rejected as rejected:
        return rejected.response
    except (TypeError, ValueError) as exc:
        return invalid_request(str(exc), "faults")
    state.faults.add(specs)
    return JSONResponse({"added": len(specs), "pending": len(state.faults)})


async def list_faults(request: Request) -> Response:
    """``GET /_sim/faults``: the pending specs."""
    return JSONResponse({"faults": state_of(request).faults.pending()})


async def clear_faults(request: Request) -> Response:
    """``DELETE /_sim/faults``: drop every pending spec."""
    return JSONResponse({"cleared": state_of(request).faults.clear()})


async def get_stats(request: Request) -> Response:
    """``GET /_sim/stats``."""
    return JSONResponse(state_of(request).stats_snapshot())


async def list_requests(request: Request) -> Response:
    """``GET /_sim/requests[?key=K][&since=N]``: the request log, oldest first.

    ``key`` keeps one key's records, ``since`` those with ``seq > N``. ``total`` counts every
    request since the last reset; when it exceeds ``kept``, the oldest records fell off.
    """
    log = state_of(request).log
    key = request.query_params.get("key") or None
    try:
        since = int(request.query_params.get("since", "0"))
    except ValueError:
        return invalid_request("since must be an integer", "since")
    return JSONResponse({"requests": log.entries(key, since), "total": log.total, "kept": len(log)})


async def reset(request: Request) -> Response:
    """``POST /_sim/reset``: clear counters, pending faults and the request log, and start
    the chaos sequence over."""
    state_of(request).reset()
    return JSONResponse({"ok": True})


async def get_config(request: Request) -> Response:
    """``GET /_sim/config``."""
    return JSONResponse({"config": state_of(request).config.as_dict()})


async def put_config(request: Request) -> Response:
    """``PUT /_sim/config`` with some config fields: update them at run time.

    A ``chaos`` object replaces the whole chaos section and starts its sequence over.
    """
    state = state_of(request)
    try:
        body = await read_json_object(request)
        config = SimulatorConfig.from_mapping(body, base=state.config)
        state.set_config(config, restart_chaos="chaos" in body)
    except Rejected as rejected:
        return rejected.response
    except ValueError as exc:
        return invalid_request(str(exc))
    return JSONResponse({"config": state.config.as_dict()})
