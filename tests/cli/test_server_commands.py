"""Server commands that the client work touched: ``aijobs replay`` runs a job again."""

from __future__ import annotations

import subprocess
import sys

import pytest

from aijobs.client import Client
from aijobs.settings import Settings
from tests.conftest import KEY_A
from tests.support import clean_env

pytestmark = pytest.mark.usefixtures("worker")


def test_replay_runs_a_finished_job_again_as_a_new_job(api_url: str, settings: Settings) -> None:
    with Client(api_url, KEY_A) as client:
        first = client.generate("m", "[[echo]] once more", metadata={"n": 1})
        client.wait(first.id)
        env = clean_env(REDIS_URL=settings.require_redis_url(), DATABASE_URL=settings.database_url)
        done = subprocess.run(
            [sys.executable, "-P", "-m", "aijobs.cli", "replay", first.id],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        again = client.wait(done.stdout.strip(), timeout_s=60)
    assert again.id != first.id and again.status == "succeeded"
    assert again.result == {"text": "once more", "finish_reason": "stop"}
    assert again.metadata == {"n": 1, "replay_of": first.id}
