"""aijobs: background AI jobs (generate, extract, embed) on Celery and Redis.

The folder workers/ of the repository is installed as this package and api/ as
aijobs.api (see pyproject.toml). The Python client is ``from aijobs import Client,
AsyncClient`` (see aijobs.client); importing aijobs loads nothing until a name is used,
and the client needs only httpx and pydantic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"
__all__ = ["ApiError", "AsyncClient", "Client", "TextReset", "__version__"]

# The names served from aijobs.client, imported on first use: `import aijobs` (the
# CLI's, a worker's) must not pay for httpx and pydantic.
_CLIENT_NAMES = frozenset({"ApiError", "AsyncClient", "Client", "TextReset"})

if TYPE_CHECKING:
    from aijobs.client import ApiError, AsyncClient, Client, TextReset


def __getattr__(name: str) -> Any:
    if name in _CLIENT_NAMES:
        from aijobs import client

        return getattr(client, name)
    raise AttributeError(f"module 'aijobs' has no attribute {name!r}")
