"""The package's shape, kept so: only `aijobs` is importable, the API loads no worker
internals, and the client loads nothing of the server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _modules_after(statement: str, cwd: Path) -> list[str]:
    code = f"import sys, json\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-P", "-c", code], cwd=cwd, capture_output=True, text=True, timeout=60,
        check=True,
    )  # fmt: skip
    return list(json.loads(done.stdout.splitlines()[-1]))


WORKER_INTERNALS = [
    "openai",
    "celery",
    "kombu",
    "aijobs.worker",
    "aijobs.events.writer",
    "aijobs.providers.openai_compat",
    "aijobs.kinds.validation",
]


@pytest.mark.parametrize("forbidden", WORKER_INTERNALS)
def test_importing_the_api_loads_no_worker_internals(tmp_path: Path, forbidden: str) -> None:
    loaded = _modules_after("from aijobs.api.main import create_app", tmp_path)
    assert not [m for m in loaded if m == forbidden or m.startswith(forbidden + ".")]


def test_only_aijobs_is_on_the_import_path(tmp_path: Path) -> None:
    # From a project that has its own api/ and workers/ packages, ours are still ours.
    for name in ("api", "workers"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("raise SystemExit('the wrong package')\n")
    done = subprocess.run(
        [sys.executable, "-P", "-c",
         "import aijobs, aijobs.api.main, aijobs.worker.celery_app; print(aijobs.__file__)"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert str(ROOT) in done.stdout
    for name in ("api", "workers"):
        alone = subprocess.run(
            [sys.executable, "-P", "-c", f"import {name}"], cwd=ROOT.parent,
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert alone.returncode != 0, f"`import {name}` should not find anything of ours"


def test_every_package_folder_is_installed() -> None:
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set()
    for folder, prefix in ((ROOT / "workers", "aijobs"), (ROOT / "api", "aijobs.api")):
        for init in folder.rglob("__init__.py"):
            if "packaging" in init.parts:
                continue
            rel = init.parent.relative_to(folder)
            found.add(".".join([prefix, *rel.parts]) if rel.parts else prefix)
    assert found <= listed, sorted(found - listed)
