"""compose.yaml's promises, read as compose reads it: each service sees only the secrets
it uses, none is written in the file, published ports stay on loopback unless told
otherwise, the data stores sit on internal networks, and the file is valid Compose.

compose_spec_v1.json is the schema `docker-compose` 1.29.2 validates with (docker/compose,
Apache-2.0, copied unchanged), so the file stays loadable by v1 as well as v2.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft4Validator, FormatChecker

from aijobs.settings import Settings
from tests.ops.fleet import (
    COMPOSE,
    OPS,
    ROOT,
    SECRETS_EXAMPLE,
    env_files,
    interpolate,
    load_compose,
    mounted_secret_files,
    read_env_file,
    redis_password,
    secrets_of,
    service_environment,
    written_secrets,
)

WORKERS = ("worker-generate", "worker-extract", "worker-embed")
#: The variables compose.yaml may substitute: settings, never secrets.
COMPOSE_VARIABLES = {"AIJOBS_BIND", "AIJOBS_FLOWER_BIND", "OPENAI_BASE_URL",
                     "AIJOBS_STREAM_RETENTION_S"}  # fmt: skip
#: Every setting that holds a secret (or a URL carrying one).
SECRET_SETTINGS = {"REDIS_URL", "DATABASE_URL", "OPENAI_API_KEY", "AIJOBS_API_KEYS",
                   "AIJOBS_TOKEN_SECRET", "AIJOBS_METRICS_TOKEN", "AIJOBS_FLOWER_BASIC_AUTH",
                   "POSTGRES_PASSWORD", "AIJOBS_WEBHOOK_SECRET"}  # fmt: skip

#: Who may know each secret; nobody else may (its value must appear nowhere they can read).
MAY_KNOW = {
    "redis password": {"api", "flower", *WORKERS},
    "database password": {"postgres", "migrate", "api", *WORKERS},
    "provider key": set(WORKERS),
    "tenant key": {"api"},
    "token secret": {"api"},
    "metrics token": {"api", "prometheus"},
    "flower password": {"flower"},
    "webhook secret": set(WORKERS),
}


@pytest.fixture
def secrets(tmp_path: Path) -> Path:
    return written_secrets(
        tmp_path / "secrets",
        OPENAI_API_KEY="sk-provider-canary-5d1e",
        AIJOBS_API_KEYS="acme:tenant-key-canary-9b7c",
    )


def secret_values(secrets: Path) -> dict[str, str]:
    """Each secret make_secrets wrote, by name, as a service would see it in clear."""
    api = read_env_file(secrets / "api.env")
    return {
        "redis password": redis_password(secrets),
        "database password": read_env_file(secrets / "postgres.env")["POSTGRES_PASSWORD"],
        "provider key": read_env_file(secrets / "provider.env")["OPENAI_API_KEY"],
        "tenant key": api["AIJOBS_API_KEYS"].partition(":")[2],
        "token secret": api["AIJOBS_TOKEN_SECRET"],
        "metrics token": api["AIJOBS_METRICS_TOKEN"],
        "webhook secret": read_env_file(secrets / "webhook.env")["AIJOBS_WEBHOOK_SECRET"],
        "flower password": read_env_file(secrets / "flower.env")[
            "AIJOBS_FLOWER_BASIC_AUTH"
        ].partition(":")[2],
    }


def strings(node: Any) -> Iterator[str]:
    """Every string in a YAML tree, keys included."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def test_each_service_can_read_only_the_secrets_it_uses(secrets: Path) -> None:
    compose = load_compose()
    values = secret_values(secrets)
    assert len(set(values.values())) == len(values) and all(values.values())
    for name in compose["services"]:
        # All the service's container can read: its environment and its mounted secrets.
        readable = "\n".join(
            [*service_environment(compose, name, secrets, {}).values()]
            + [p.read_text() for p in mounted_secret_files(compose, name, secrets)]
        )
        knows = {secret for secret, value in values.items() if value in readable}
        expected = {secret for secret, who in MAY_KNOW.items() if name in who}
        assert knows == expected, name


def test_the_settings_each_service_reads_are_the_ones_it_is_given(
    secrets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Through aijobs' own Settings, so a misspelt variable name cannot pass for a secret.
    compose = load_compose()

    def settings_of(name: str) -> Settings:
        with monkeypatch.context() as patch:
            for key in [k for k in os.environ if k.startswith("AIJOBS_")]:
                patch.delenv(key)
            for key in ("REDIS_URL", "DATABASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
                patch.delenv(key, raising=False)
            for key, value in service_environment(compose, name, secrets, {}).items():
                patch.setenv(key, value)
            return Settings()

    values = secret_values(secrets)
    api = settings_of("api")
    assert values["redis password"] in api.require_redis_url()
    assert api.database_url.startswith("postgresql://aijobs:")
    assert api.tenant_by_key == {values["tenant key"]: "acme"}
    assert api.token_secret is not None and api.openai_api_key is None
    assert api.webhooks_on and api.webhook_secret is None
    for name in WORKERS:
        worker = settings_of(name)
        assert worker.openai_api_key is not None
        assert worker.openai_api_key.get_secret_value() == values["provider key"]
        assert worker.database_url.startswith("postgresql://") and worker.redis_url
        assert worker.tenant_by_key == {} and worker.token_secret is None
        assert worker.worker_heartbeat_file and worker.log_json
        assert worker.webhook_secret is not None
    flower = settings_of("flower")
    assert flower.flower_basic_auth is not None and flower.redis_url
    assert flower.database_url.startswith("sqlite")  # the default: it is given none
    migrate = settings_of("migrate")
    assert migrate.database_url.startswith("postgresql://") and migrate.redis_url is None


def test_no_secret_is_written_in_the_compose_file() -> None:
    compose = load_compose()
    for name, service in compose["services"].items():
        assert not SECRET_SETTINGS & set(service.get("environment", {})), name
        for path in env_files(service):
            assert path.startswith("ops/secrets/"), (name, path)
    # Nor substituted into it from the shell or .env (`docker compose config` prints those).
    used = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", COMPOSE.read_text()))
    assert used == COMPOSE_VARIABLES
    for text in strings(compose):
        assert not re.search(r"://[^/\s@]+:[^/\s@]+@", text), text
    # ops/.env.example documents exactly those variables.
    assert set(read_env_file(OPS / ".env.example")) == COMPOSE_VARIABLES


def test_published_ports_bind_to_loopback_unless_told_otherwise() -> None:
    services = load_compose()["services"]

    def published(env: dict[str, str]) -> dict[str, list[str]]:
        return {
            name: [interpolate(p, env) for p in svc["ports"]]
            for name, svc in services.items()
            if svc.get("ports")
        }

    assert published({}) == {"api": ["127.0.0.1:8000:8000"], "flower": ["127.0.0.1:5555:5555"]}
    # Opening the API does not open Flower: each has its own switch.
    assert published({"AIJOBS_BIND": "0.0.0.0"}) == {
        "api": ["0.0.0.0:8000:8000"],
        "flower": ["127.0.0.1:5555:5555"],
    }
    assert published({"AIJOBS_FLOWER_BIND": "10.0.0.5"})["flower"] == ["10.0.0.5:5555:5555"]


def test_networks_keep_the_data_stores_apart() -> None:
    compose = load_compose()
    members: dict[str, set[str]] = {network: set() for network in compose["networks"]}
    for name, service in compose["services"].items():
        assert service.get("networks"), f"{name} would join the default network"
        for network in service["networks"]:
            members[network].add(name)
    assert members["postgres"] == {"postgres", "migrate", "api", *WORKERS}
    assert members["redis"] == {"redis", "api", "flower", *WORKERS}
    assert members["metrics"] == {"prometheus", "api", *WORKERS}
    # Only what is published or calls the provider has a route out.
    routed = {n for n, cfg in compose["networks"].items() if not (cfg or {}).get("internal")}
    reachable_out = {s for n in routed for s in members[n]}
    assert reachable_out == {"api", "flower", "simulator", *WORKERS}


def test_prometheus_sends_the_token_the_api_is_given(secrets: Path) -> None:
    compose = load_compose()
    scrape = yaml.safe_load((OPS / "prometheus.yml").read_text())["scrape_configs"]
    api_job = next(job for job in scrape if job["job_name"] == "aijobs-api")
    assert api_job["authorization"]["type"] == "Bearer"
    [secret] = secrets_of(compose["services"]["prometheus"])
    # Compose mounts a secret at /run/secrets/NAME when it names no target.
    assert api_job["authorization"]["credentials_file"] == f"/run/secrets/{secret}"
    [token_file] = mounted_secret_files(compose, "prometheus", secrets)
    given = service_environment(compose, "api", secrets, {})["AIJOBS_METRICS_TOKEN"]
    assert token_file.read_text().strip() == given


def _ports_format(instance: object) -> bool:
    # docker-compose v1 checks `ports` entries with a format of its own: [ip:]host:container.
    if not isinstance(instance, str):
        return True
    return bool(re.fullmatch(r"(?:[\d.]+:|\[[0-9a-f:]+\]:)?(?:\d+(?:-\d+)?:)?\d+(?:-\d+)?"
                             r"(?:/(?:tcp|udp|sctp))?", instance))  # fmt: skip


def test_the_file_is_valid_for_docker_compose_v1() -> None:
    schema = json.loads((Path(__file__).parent / "compose_spec_v1.json").read_text())
    checker = FormatChecker()
    checker.checks("ports")(_ports_format)
    # v1 validates after substituting variables (here: their defaults).
    text = interpolate(COMPOSE.read_text(), {})
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in Draft4Validator(schema, format_checker=checker).iter_errors(yaml.safe_load(text))
    ]
    assert errors == []
    assert not _ports_format("127.0.0.1:8000:8000:9") and _ports_format("127.0.0.1:8000:8000")


def test_every_env_file_and_secret_has_an_example(secrets: Path) -> None:
    compose = load_compose()
    named = {Path(p).name for svc in compose["services"].values() for p in env_files(svc)}
    named |= {Path(s["file"]).name for s in compose["secrets"].values()}
    examples = {p.name for p in SECRETS_EXAMPLE.iterdir()} - {"README.md"}
    assert named == examples == {p.name for p in secrets.iterdir()}
    for name in sorted(examples):
        example, written = SECRETS_EXAMPLE / name, secrets / name
        if name.endswith(".env"):
            assert set(read_env_file(example)) == set(read_env_file(written)), name
        elif name.endswith(".acl"):
            # The same users and rules; only the hash differs.
            def rules(path: Path) -> str:
                return re.sub(r"#\S+", "#HASH", path.read_text())

            assert rules(example) == rules(written)
    readme = (SECRETS_EXAMPLE / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in examples)


def test_make_secrets_keeps_files_private_agreeing_and_never_overwrites(tmp_path: Path) -> None:
    target = tmp_path / "secrets"
    script = [sys.executable, str(OPS / "make_secrets.py"), "--dir", str(target)]
    env = {"PATH": "/usr/bin:/bin", "OPENAI_API_KEY": "sk-from-env"}
    first = subprocess.run(script, env=env, capture_output=True, text=True, timeout=30,
                           check=False, cwd=tmp_path)  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert "AIJOBS_API_KEYS" not in first.stderr and "aijobs keys create" in first.stderr
    assert target.stat().st_mode & 0o777 == 0o700
    for path in target.iterdir():
        readable = path.name in ("redis-users.acl", "metrics-token")
        assert path.stat().st_mode & 0o777 == (0o644 if readable else 0o600), path.name
    before = {p.name: p.read_text() for p in target.iterdir()}

    acl = before["redis-users.acl"]
    assert f"#{hashlib.sha256(redis_password(target).encode()).hexdigest()} " in acl
    database = read_env_file(target / "database.env")["DATABASE_URL"]
    postgres = read_env_file(target / "postgres.env")["POSTGRES_PASSWORD"]
    assert database == f"postgresql://aijobs:{postgres}@postgres:5432/aijobs"
    assert read_env_file(target / "provider.env") == {"OPENAI_API_KEY": "sk-from-env"}
    assert before["metrics-token"] == read_env_file(target / "api.env")["AIJOBS_METRICS_TOKEN"]
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{43}", v) for v in (postgres, redis_password(target)))

    again = subprocess.run(script, env=env, capture_output=True, text=True, timeout=30,
                           check=False, cwd=tmp_path)  # fmt: skip
    assert again.returncode == 1 and "not overwriting" in again.stderr
    assert {p.name: p.read_text() for p in target.iterdir()} == before
    assert (ROOT / "ops" / "secrets" / ".gitignore").read_text().splitlines()[1:] == [
        "*",
        "!.gitignore",
    ]
