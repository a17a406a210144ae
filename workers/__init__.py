"""aijobs: background AI jobs (generate, extract, embed) on Celery and Redis.

The folder ``workers/`` of the repository is installed as this package and ``api/`` as
``aijobs.api`` (see ``pyproject.toml``). The Python client is ``from aijobs import Client,
AsyncClient``; importing ``aijobs`` loads nothing else until a name is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"
__all__ = ["AsyncClient", "Client", "__version__"]

if TYPE_CHECKING:
    from aijobs.client import AsyncClient, Client


def __getattr__(name: str) -> Any:
    if name in ("Client", "AsyncClient"):
        from aijobs import client

        return getattr(client, name)
    raise AttributeError(f"module 'aijobs' has no attribute {name!r}")
