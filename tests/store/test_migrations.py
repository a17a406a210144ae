"""The migrations build exactly the models' schema."""

from __future__ import annotations

from sqlalchemy import inspect

from aijobs.store.db import make_engine
from aijobs.store.models import Base


def test_migrations_match_the_models(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        for table in ("jobs", "embedding_batches", "api_keys"):
            columns = {c["name"] for c in inspect(engine).get_columns(table)}
            assert columns == {c.name for c in Base.metadata.tables[table].columns}
        from alembic.autogenerate import compare_metadata
        from alembic.runtime.migration import MigrationContext

        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
    finally:
        engine.dispose()
