"""The simulator's ASGI app: OpenAI-compatible routes plus the ``/_sim`` admin API."""

from __future__ import annotations

import time
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aijobs.devtools.simulator import admin_routes
from aijobs.devtools.simulator.admission import auth_kind, state_of
from aijobs.devtools.simulator.chat_route import chat_completions
from aijobs.devtools.simulator.config import SimulatorConfig
from aijobs.devtools.simulator.embeddings_route import create_embeddings
from aijobs.devtools.simulator.errors import SERVER_ERROR_MESSAGE, error_response
from aijobs.devtools.simulator.state import SimulatorState
from aijobs.devtools.simulator.streaming import quiet_simulated_disconnects

MODELS: tuple[str, ...] = (
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "gpt-5-mini",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "text-embedding-ada-002",
)
_MODELS_CREATED = 1_700_000_000


def create_app(config: SimulatorConfig | None = None) -> Starlette:
    """Return the simulator ASGI app; its state lives on ``app.state.sim``."""
    quiet_simulated_disconnects()
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/embeddings", create_embeddings, methods=["POST"]),
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/v1/models/{model:path}", get_model, methods=["GET"]),
            Route("/_sim/faults", admin_routes.add_faults, methods=["POST"]),
            Route("/_sim/faults", admin_routes.list_faults, methods=["GET"]),
            Route("/_sim/faults", admin_routes.clear_faults, methods=["DELETE"]),
            Route("/_sim/stats", admin_routes.get_stats, methods=["GET"]),
            Route("/_sim/requests", admin_routes.list_requests, methods=["GET"]),
            Route("/_sim/reset", admin_routes.reset, methods=["POST"]),
            Route("/_sim/config", admin_routes.get_config, methods=["GET"]),
            Route("/_sim/config", admin_routes.put_config, methods=["PUT", "PATCH"]),
        ],
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )
    app.state.sim = SimulatorState(config or SimulatorConfig())
    return app


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 404:
        message = f"Invalid URL ({request.method} {request.url.path})"
    else:
        message = f"{request.method} is not allowed on {request.url.path}"
    return error_response(status, message, "invalid_request_error")


async def _server_error(request: Request, exc: Exception) -> Response:
    return error_response(500, SERVER_ERROR_MESSAGE, "server_error")


# --- models ----------------------------------------------------------------------------------


def _model_object(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": _MODELS_CREATED, "owned_by": "system"}


async def list_models(request: Request) -> Response:
    """``GET /v1/models``."""
    state_of(request).stats.record_request("models", None, time.time(), auth_kind(request))
    return JSONResponse({"object": "list", "data": [_model_object(m) for m in MODELS]})


async def get_model(request: Request) -> Response:
    """``GET /v1/models/{model}`` (any id exists)."""
    state_of(request).stats.record_request("models", None, time.time(), auth_kind(request))
    return JSONResponse(_model_object(request.path_params["model"]))
