"""The ``aijobs-client`` distribution (workers/client/packaging): its wheel holds the
client and the contract it reads, nothing of the server, and works on its own against
the real API."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import KEY_A

pytestmark = pytest.mark.usefixtures("worker")
WORKERS = Path(__file__).resolve().parents[2] / "workers"

PROBE = """
import sys
# The unpacked wheel instead of the editable install of the whole project (a finder
# that maps every aijobs.* name to the checkout): only what the wheel holds is there.
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in str(getattr(f, "__module__", ""))]
sys.path.insert(0, sys.argv[1])
import aijobs
assert aijobs.__file__.startswith(sys.argv[1]), aijobs.__file__
for server_module in ("aijobs.settings", "aijobs.cli", "aijobs.api", "aijobs.store"):
    try:
        __import__(server_module)
    except ImportError:
        pass
    else:
        raise SystemExit(f"{server_module} is in the client wheel")
from aijobs import Client
with Client(sys.argv[2], sys.argv[3]) as client:
    job = client.generate("m", "[[echo]] from the wheel")
    print(client.wait(job.id, timeout_s=60).result["text"])
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         str(WORKERS / "client" / "packaging"), "-w", str(out)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    (built,) = out.glob("aijobs_client-*.whl")
    return built


def test_the_wheel_holds_every_client_module_and_nothing_else(wheel: Path) -> None:
    names = {n for n in zipfile.ZipFile(wheel).namelist() if not n.startswith("aijobs_client-")}
    client_modules = {f"aijobs/client/{p.name}" for p in (WORKERS / "client").glob("*.py")}
    core = {"aijobs/__init__.py", "aijobs/py.typed", "aijobs/errors.py", "aijobs/schemas.py",
            "aijobs/sse.py"}  # fmt: skip
    assert names == client_modules | core
    metadata = zipfile.ZipFile(wheel).read(f"{wheel.name.split('-py3')[0]}.dist-info/METADATA")
    requires = sorted(line for line in metadata.decode().splitlines()
                      if line.startswith("Requires-Dist:"))  # fmt: skip
    assert requires == ["Requires-Dist: httpx>=0.27", "Requires-Dist: pydantic>=2.7"]


def test_the_wheel_alone_talks_to_the_api(wheel: Path, tmp_path: Path, api_url: str) -> None:
    zipfile.ZipFile(wheel).extractall(tmp_path)
    done = subprocess.run([sys.executable, "-P", "-c", PROBE, str(tmp_path), api_url, KEY_A],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "from the wheel\n"
