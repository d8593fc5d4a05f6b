"""The fleet database: :func:`open_store` picks the backend from ``--db``.

``base.py`` holds the :class:`Store` (migrations, batched deduplicated writes, queries,
one SQL text for both databases); ``sqlite.py`` and ``postgres.py`` only open a
connection and say which errors mean the data was refused.
"""

from __future__ import annotations

from pathlib import Path

from device_agent.errors import EdgeError
from edge_sdk.fleet.store.base import WINDOW_ROW_COLUMNS, Batch, Store, WriteResult, exits_json
from edge_sdk.fleet.store.postgres import connect_postgres
from edge_sdk.fleet.store.sqlite import connect_sqlite

__all__ = ["WINDOW_ROW_COLUMNS", "Batch", "Store", "WriteResult", "exits_json", "open_store"]


def open_store(db: str, *, must_exist: bool = False) -> Store:
    """``fleet.db`` (SQLite, WAL) or ``postgresql://...`` (psycopg 3) → a migrated store.

    ``must_exist``: for commands that only read; a missing SQLite file is an error
    instead of a new, empty database.
    """
    if db.startswith(("postgresql://", "postgres://")):
        return connect_postgres(db)
    if "://" in db:
        raise EdgeError(f"--db: expected a SQLite file path or postgresql://..., found {db!r}")
    if must_exist and not Path(db).is_file():
        raise EdgeError(f"--db {db}: no fleet database there (the collector creates it: "
                        f"edge collector --db {db})")
    return connect_sqlite(db)
