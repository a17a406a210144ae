"""Request dependencies: the app state and the caller.

Each is ``async``: FastAPI runs a plain ``def`` dependency in a worker thread, a hop that
cost more than all three do.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPBearer

from aijobs.api.auth import Caller
from aijobs.api.guards import CALLER
from aijobs.api.state import ApiState

#: Documents the scheme in OpenAPI; the key itself is checked by ``RequestGuard``
#: before the body is read.
_bearer = HTTPBearer(auto_error=False, description="An aijobs API key")


async def get_state(request: Request) -> ApiState:
    """The process-wide API state."""
    state: ApiState = request.app.state.aijobs
    return state


StateDep = Annotated[ApiState, Depends(get_state)]


async def get_caller(request: Request, _scheme: Annotated[object, Depends(_bearer)]) -> Caller:
    """The caller ``RequestGuard`` verified; 401 if there is none."""
    caller = getattr(request.state, CALLER, None)
    if not isinstance(caller, Caller):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing API key: send Authorization: Bearer <key>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return caller


CallerDep = Annotated[Caller, Depends(get_caller)]


async def get_tenant(caller: CallerDep) -> str:
    """The caller's tenant."""
    return caller.tenant


TenantDep = Annotated[str, Depends(get_tenant)]
