"""What ``GET /v1/jobs`` may filter and order by, as SQL that SQLite and PostgreSQL run
alike (the cursors of its two orders are in ``aijobs.store.jobs``).

- **Metadata.** ``metadata.KEY=VALUE`` matches jobs whose metadata holds ``KEY`` with the
  string ``VALUE``, or a number written ``VALUE`` (``{"n": 42}`` for ``42``). The two
  stores read JSON differently (PostgreSQL's ``->>`` gives ``true`` and ``42`` as text,
  SQLite's ``json_extract`` gives ``1`` and the integer), so the value's JSON type is
  checked too: a boolean, a null, an object or a list matches nothing on either.
- **Creation time.** ``created_after <= created_at < created_before``: windows laid end to
  end neither miss a job nor show one twice.
- **Order.** ``created`` (newest first, the default) or ``run_at``: the jobs that have a
  ``run_at`` (scheduled, or waiting for a retry), soonest first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, and_, func

from aijobs.errors import InvalidInput
from aijobs.store.models import Job

Order = Literal["created", "run_at"]
#: Metadata keys a filter may name: what a JSON path spells the same way in both stores.
METADATA_KEY = re.compile(r"[A-Za-z0-9_.:@-]{1,100}")
MAX_METADATA_FILTERS = 10
MAX_METADATA_VALUE_CHARS = 1000
#: JSON types a metadata filter matches, as each store names them.
_MATCHED_TYPES = {"postgresql": ("string", "number"), "sqlite": ("text", "integer", "real")}


@dataclass(frozen=True, slots=True)
class ListFilters:
    """The filters and order of a listing beyond status and kind (all checked already:
    keys match ``METADATA_KEY``, timestamps are aware UTC)."""

    metadata: tuple[tuple[str, str], ...] = ()
    created_after: datetime | None = None
    created_before: datetime | None = None
    order: Order = "created"


NO_FILTERS = ListFilters()


def metadata_filter(key: str, value: str) -> tuple[str, str]:
    """A ``(key, value)`` pair for ``ListFilters.metadata``, or ``InvalidInput``."""
    if not METADATA_KEY.fullmatch(key):
        raise InvalidInput(
            f"metadata.{key[:100]}: a filterable key is 1-100 letters, digits, "
            "'_', '.', ':', '@' or '-'"
        )
    if len(value) > MAX_METADATA_VALUE_CHARS:
        raise InvalidInput(f"metadata.{key}: at most {MAX_METADATA_VALUE_CHARS} characters")
    if "\x00" in value:  # PostgreSQL refuses a NUL in a string outright
        raise InvalidInput(f"metadata.{key}: must not contain NUL")
    return key, value


def apply(query: Select[Any], filters: ListFilters, dialect: str) -> Select[Any]:
    """``query`` narrowed by ``filters`` (not yet ordered)."""
    for key, value in filters.metadata:
        query = query.where(_metadata_equals(key, value, dialect))
    if filters.created_after is not None:
        query = query.where(Job.created_at >= filters.created_after)
    if filters.created_before is not None:
        query = query.where(Job.created_at < filters.created_before)
    if filters.order == "run_at":
        query = query.where(Job.run_at.is_not(None))
    return query


def _metadata_equals(key: str, value: str, dialect: str) -> ColumnElement[bool]:
    element = Job.meta[key]
    if dialect == "postgresql":
        json_type: ColumnElement[Any] = func.json_typeof(element)
    else:  # SQLite: the key is quoted in the path, which METADATA_KEY keeps well formed
        json_type = func.json_type(Job.meta, f'$."{key}"')
    types = _MATCHED_TYPES.get(dialect, _MATCHED_TYPES["sqlite"])
    return and_(json_type.in_(types), element.as_string() == value)
