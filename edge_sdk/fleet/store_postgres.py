"""PostgreSQL backend for the fleet store (psycopg 3)."""

from __future__ import annotations

from device_agent.errors import EdgeError
from edge_sdk.fleet.schema import POSTGRES
from edge_sdk.fleet.store import Store


def connect_postgres(dsn: str) -> Store:
    """Connect to ``postgresql://...``; a ``?options=-csearch_path%3DNAME`` picks a schema."""
    import psycopg

    try:
        conn = psycopg.connect(dsn, connect_timeout=10)
    except psycopg.Error as e:
        raise EdgeError(f"--db {dsn}: cannot connect to PostgreSQL ({e})".strip()) from e
    return Store(conn, POSTGRES, changes=lambda cur: max(int(cur.rowcount), 0))
