"""PostgreSQL backend for the fleet store (psycopg 3)."""

from __future__ import annotations

from typing import Any

from device_agent.errors import EdgeError
from edge_sdk.fleet.schema import POSTGRES
from edge_sdk.fleet.store.base import Store


def connect_postgres(dsn: str) -> Store:
    """Connect to ``postgresql://...``; a ``?options=-csearch_path%3DNAME`` picks a schema."""
    import psycopg

    named: dict[str, Any] = {}

    def connect() -> psycopg.Connection[Any]:
        return psycopg.connect(dsn, connect_timeout=10, **named)

    try:
        # Named, so a DBA can tell the collector's sessions apart (unless the DSN names it).
        if "application_name" not in psycopg.conninfo.conninfo_to_dict(dsn):
            named["application_name"] = "edge-collector"
        conn = connect()
    except psycopg.Error as e:
        raise EdgeError(f"--db {dsn}: cannot connect to PostgreSQL ({e})".strip()) from e
    return Store(
        conn,
        POSTGRES,
        changes=lambda cur: max(int(cur.rowcount), 0),
        # A value out of range or a violated constraint (SQLSTATE classes 22 and 23), or an
        # integer the binary COPY cannot encode as 64 bits.
        refused=lambda e: isinstance(e, (psycopg.DataError, psycopg.IntegrityError, OverflowError)),
        reconnect=connect,
    )
