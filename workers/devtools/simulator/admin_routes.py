"""The ``/_sim`` admin API: faults, stats, reset and run-time config."""

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


async def reset(request: Request) -> Response:
    """``POST /_sim/reset``: clear counters and pending faults."""
    state_of(request).reset()
    return JSONResponse({"ok": True})


async def get_config(request: Request) -> Response:
    """``GET /_sim/config``."""
    return JSONResponse({"config": state_of(request).config.as_dict()})


async def put_config(request: Request) -> Response:
    """``PUT /_sim/config`` with some config fields: update them at run time."""
    state = state_of(request)
    try:
        body = await read_json_object(request)
        state.config = SimulatorConfig.from_mapping(body, base=state.config)
    except Rejected as rejected:
        return rejected.response
    except ValueError as exc:
        return invalid_request(str(exc))
    return JSONResponse({"config": state.config.as_dict()})
