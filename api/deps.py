"""Request dependencies: the app state and the caller's tenant."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from aijobs.api.state import ApiState

_bearer = HTTPBearer(auto_error=False, description="An aijobs API key")


def get_state(request: Request) -> ApiState:
    """The process-wide API state."""
    state: ApiState = request.app.state.aijobs
    return state


StateDep = Annotated[ApiState, Depends(get_state)]


def tenant_for_key(state: ApiState, key: str) -> str | None:
    """The tenant a key belongs to (bootstrap keys, then the key table), or None."""
    presented = key.encode()
    tenant = None
    # Compare against every bootstrap key, in constant time, so timing reveals nothing.
    for known, owner in state.settings.tenant_by_key.items():
        if hmac.compare_digest(presented, known.encode()):
            tenant = owner
    return tenant or state.keys.tenant_for(key)


def bearer_key(authorization: str | None) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header value."""
    scheme, _, key = (authorization or "").partition(" ")
    return key.strip() or None if scheme.lower() == "bearer" else None


def get_tenant(
    state: StateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The tenant whose key the request carries; 401 without a valid key."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing API key: send Authorization: Bearer <key>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    tenant = tenant_for_key(state, credentials.credentials)
    if tenant is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "invalid API key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return tenant


TenantDep = Annotated[str, Depends(get_tenant)]
