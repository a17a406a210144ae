"""Write the fleet's secrets for compose.yaml: one file per concern under ops/secrets/,
each handed by compose only to the services that use it.

    python3 ops/make_secrets.py
    OPENAI_API_KEY=sk-... AIJOBS_API_KEYS=acme:$(openssl rand -hex 24) python3 ops/make_secrets.py

Passwords and tokens are fresh random strings; the provider key and the tenants' bootstrap
keys come from the environment when set (else they are left empty, to fill in by hand or
to replace by `aijobs keys create`). ops/secrets.example/ shows every file with
placeholders, for those who fill them from a vault instead.

It writes nothing when any of the files exists already: PostgreSQL keeps the password it
was initialised with, and the Redis password lives in two files that must agree. Pass
--force only for a fleet whose volumes are new (or after changing the passwords inside).

Standard library only, so it runs with any Python 3.9+ on the host.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import secrets
import sys
from pathlib import Path

DEFAULT_DIR = Path(__file__).resolve().parent / "secrets"

#: The Redis user every aijobs client logs in as; its password is in REDIS_URL.
REDIS_USER = "aijobs"

#: What the `aijobs` user may do: every command on every key and channel (Celery's
#: transport, the event streams' Lua scripts, pub/sub) but the dangerous ones (FLUSHALL,
#: CONFIG, KEYS, INFO, DEBUG, SHUTDOWN, ACL, MONITOR, ...), which no aijobs process sends:
#: tests/ops/test_fleet_on_acl_redis.py runs the fleet on it and Redis denies nothing.
#: CLIENT SETNAME (each connection names itself) is in @connection from Redis 7 on; Redis 6
#: files all of CLIENT under @dangerous, hence the explicit grant.
REDIS_APP_RULES = "~* &* +@all -@dangerous +client|setname"


def redis_acl(password: str) -> str:
    """The Redis ACL file: no default user, the app's user, a PING-only health check user.

    The `default` line matters: an ACL file without one leaves the default user as Redis
    makes it, `on nopass` with every right, and only protected mode then stands between
    the network and the data. The password is stored as its SHA-256, so the file can be
    readable by the Redis process without holding the password.
    """
    digest = hashlib.sha256(password.encode()).hexdigest()
    return (
        "user default off resetpass resetkeys resetchannels -@all\n"
        f"user {REDIS_USER} on #{digest} resetkeys resetchannels {REDIS_APP_RULES}\n"
        "user healthcheck on nopass resetkeys resetchannels -@all +ping\n"
    )


def env_file(comment: str, values: dict[str, str]) -> str:
    """A compose env file: a comment, then KEY=value lines (values taken literally)."""
    lines = [f"# {line}" if line else "#" for line in comment.splitlines()]
    lines += [f"{key}={value}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def token() -> str:
    """A random string safe in a URL, an env file and a Redis ACL (256 bits)."""
    return secrets.token_urlsafe(32)


def webhook_secret() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` and base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_files(environ: dict[str, str]) -> dict[str, tuple[str, int]]:
    """File name -> (content, mode) of every secret file, with fresh passwords."""
    redis_password = token()
    postgres_password = token()
    metrics_token = token()
    private, readable = 0o600, 0o644
    return {
        "redis.env": (
            env_file(
                "Redis, as the `aijobs` user: for the API, the workers and Flower.",
                {"REDIS_URL": f"redis://{REDIS_USER}:{redis_password}@redis:6379/0"},
            ),
            private,
        ),
        # Read by redis-server itself (uid 999 in its image), so not 0600; it holds only
        # hashes. The directory is 0700, so nobody else on the host can read it.
        "redis-users.acl": (redis_acl(redis_password), readable),
        "postgres.env": (
            env_file(
                "PostgreSQL's own password (used when its volume is first created).",
                {"POSTGRES_PASSWORD": postgres_password},
            ),
            private,
        ),
        "database.env": (
            env_file(
                "The job store: for the migration, the API and the workers.",
                {"DATABASE_URL": f"postgresql://aijobs:{postgres_password}@postgres:5432/aijobs"},
            ),
            private,
        ),
        "provider.env": (
            env_file(
                "The provider's key: for the workers only (they alone call the provider).",
                {"OPENAI_API_KEY": environ.get("OPENAI_API_KEY", "")},
            ),
            private,
        ),
        "api.env": (
            env_file(
                "The API's own secrets: tenants' bootstrap keys (tenant:key,...), the key\n"
                "that signs browser event tokens, and the bearer token /metrics asks for.",
                {
                    "AIJOBS_API_KEYS": environ.get("AIJOBS_API_KEYS", ""),
                    "AIJOBS_TOKEN_SECRET": token(),
                    "AIJOBS_METRICS_TOKEN": metrics_token,
                },
            ),
            private,
        ),
        "webhook.env": (
            env_file(
                "Signs completion webhooks (Standard Webhooks): for the workers only, which\n"
                "send them (the API only accepts webhook_url: AIJOBS_WEBHOOKS_ENABLED).",
                {"AIJOBS_WEBHOOK_SECRET": webhook_secret()},
            ),
            private,
        ),
        "flower.env": (
            env_file(
                "Flower's login (user:password).", {"AIJOBS_FLOWER_BASIC_AUTH": f"ops:{token()}"}
            ),
            private,
        ),
        # Prometheus (user nobody in its image) reads it as the API's bearer token.
        "metrics-token": (metrics_token, readable),
    }


def write_secrets(directory: Path, environ: dict[str, str], *, force: bool = False) -> list[Path]:
    """Write every secret file into ``directory`` (made 0700); refuse if one exists."""
    files = secret_files(environ)
    existing = [directory / name for name in files if (directory / name).exists()]
    if existing and not force:
        names = ", ".join(p.name for p in existing)
        raise FileExistsError(f"{directory} already has {names}: not overwriting (see --force)")
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    written = []
    for name, (content, mode) in files.items():
        path = directory / name
        # Created with its final mode, so the content is never readable by others.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
        path.chmod(mode)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="where (ops/secrets)")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    args = parser.parse_args(argv)
    try:
        written = write_secrets(args.dir, dict(os.environ), force=args.force)
    except FileExistsError as exc:
        print(f"make_secrets: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    if not os.environ.get("OPENAI_API_KEY"):
        print("make_secrets: OPENAI_API_KEY is empty in provider.env: fill it in (or run "
              "offline with OPENAI_BASE_URL)", file=sys.stderr)  # fmt: skip
    if not os.environ.get("AIJOBS_API_KEYS"):
        print("make_secrets: no bootstrap tenant keys: create keys with "
              "`docker compose exec api aijobs keys create TENANT`", file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
