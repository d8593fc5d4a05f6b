"""A durable on-disk outbox (SQLite, WAL) for messages that must survive broker outages.

A window is written here before it is sent and deleted only after the broker's PUBACK,
so a crash or a lost connection never loses it: it is replayed, in order, on the next
connection (the collector deduplicates on (device, boot id, seq)). When the cap is
reached the oldest rows are dropped and the count is kept (durably) until the next
window reports it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from device_agent.errors import EdgeError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS outbox_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO outbox_meta (key, value) VALUES ('dropped', 0);
"""


@dataclass(frozen=True)
class OutboxEntry:
    """A stored message awaiting its PUBACK; ``id`` orders the replay and names it for delete."""

    id: int
    topic: str
    payload: bytes
    qos: int


class Outbox:
    """Thread-safe: the serve loop adds, paho's thread deletes on PUBACK."""

    def __init__(self, path: Path | str, *, cap: int = 10_000):
        if cap < 1:
            raise EdgeError(f"outbox cap: expected >= 1, found {cap}")
        self.path, self.cap = str(path), cap
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a window acknowledged by put() survives power loss, not only a crash.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise EdgeError(f"{path}: not a usable outbox database ({e})") from e

    def put(self, topic: str, build: Callable[[int], bytes], qos: int = 1) -> int:
        """Store ``build(dropped_so_far)`` atomically and reset the drop count; returns the row id.

        Passing the pending drop count into the payload builder inside the same
        transaction means a drop is reported exactly once.
        """
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                dropped = self._db.execute(
                    "SELECT value FROM outbox_meta WHERE key='dropped'"
                ).fetchone()[0]
                cur = self._db.execute(
                    "INSERT INTO outbox (topic, payload, qos) VALUES (?, ?, ?)",
                    (topic, build(dropped), qos),
                )
                self._db.execute("UPDATE outbox_meta SET value=0 WHERE key='dropped'")
                self._enforce_cap()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return int(cur.lastrowid or 0)

    def _enforce_cap(self) -> None:
        (count,) = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()
        excess = count - self.cap
        if excess > 0:
            self._db.execute(
                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)",
                (excess,),
            )
            self._db.execute("UPDATE outbox_meta SET value=value+? WHERE key='dropped'", (excess,))

    def pending(self, after_id: int = 0, limit: int = 100) -> list[OutboxEntry]:
        """Rows in insertion order, oldest first, with id greater than ``after_id``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, payload, qos FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        return [OutboxEntry(int(i), str(t), bytes(p), int(q)) for i, t, p, q in rows]

    def delete(self, *entry_ids: int) -> None:
        """Forget rows once the broker acknowledged them."""
        with self._lock:
            self._db.executemany("DELETE FROM outbox WHERE id=?", [(i,) for i in entry_ids])

    def dropped(self) -> int:
        """Drops not yet reported in a window."""
        with self._lock:
            return int(
                self._db.execute("SELECT value FROM outbox_meta WHERE key='dropped'").fetchone()[0]
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def close(self) -> None:
        """Close the database; unsent entries stay on disk for the next start."""
        with self._lock:
            self._db.close()
