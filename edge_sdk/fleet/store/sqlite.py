"""SQLite backend for the fleet store (WAL, so ``edge fleet`` reads while the collector writes)."""

from __future__ import annotations

import sqlite3
from typing import Any

from device_agent.errors import EdgeError
from edge_sdk.fleet.schema import SQLITE
from edge_sdk.fleet.store.base import Store


def connect_sqlite(path: str) -> Store:
    """Open (creating if needed) the SQLite file at ``path`` in WAL mode → a migrated store."""
    try:
        conn = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a committed batch survives a process crash; the collector
        # acknowledges messages to the broker only after the commit.
        conn.execute("PRAGMA synchronous=NORMAL")
        # 32 MiB of page cache (default 2 MiB): the dedupe index takes inserts all over
        # its B-tree, one device after another; measured 20-30% less time per batch.
        conn.execute("PRAGMA cache_size=-32768")
    except sqlite3.DatabaseError as e:
        raise EdgeError(f"{path}: not a usable SQLite database ({e})") from e
    wrapped = _AutocommitSqlite(conn)
    try:
        return Store(wrapped, SQLITE, changes=lambda cur: wrapped.last_changes(cur), refused=_refused)
    except sqlite3.DatabaseError as e:
        raise EdgeError(f"{path}: not a usable fleet database ({e})") from e


def _refused(e: BaseException) -> bool:
    """A constraint or a trigger's abort, a value SQLite cannot take, or one Python cannot
    bind (``ProgrammingError`` since 3.11, ``InterfaceError`` before). Locked, busy, disk
    full and I/O errors are ``OperationalError``: retried."""
    return isinstance(e, (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.ProgrammingError,
                          sqlite3.InterfaceError, OverflowError))


class _AutocommitSqlite:
    """sqlite3 in autocommit mode with explicit BEGIN; commit/rollback are no-ops outside one."""

    def __init__(self, conn: sqlite3.Connection):
        self.raw = conn
        self._before = 0

    def cursor(self) -> Any:
        self._before = self.raw.total_changes
        return self.raw.cursor()

    def last_changes(self, cur: Any) -> int:
        return int(cur.rowcount)

    def commit(self) -> None:
        if self.raw.in_transaction:
            self.raw.execute("COMMIT")

    def rollback(self) -> None:
        if self.raw.in_transaction:
            self.raw.execute("ROLLBACK")

    def close(self) -> None:
        self.raw.close()
