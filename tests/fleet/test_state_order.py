"""A Will has no time of its own: it is ordered by its boot's start (``booted``), so a
stale Will of an earlier boot never hides a newer birth (real SQLite store)."""

from __future__ import annotations

from pathlib import Path

from device_agent.protocol.messages import State, Status
from edge_sdk.fleet.store import Batch, open_store


def _write(store, state: State, at: float) -> None:  # type: ignore[no-untyped-def]
    b = Batch()
    b.states.append(("lab", "pi-01", state, at))
    store.write(b)


def test_stale_will_never_hides_a_newer_birth(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "fleet.db"))
    birth_b = State(status=Status.ONLINE, boot_id="B", ts=120.0, booted=119.0)
    _write(store, birth_b, at=121.0)
    _write(store, State(status=Status.OFFLINE, boot_id="A", ts=None, booted=10.0), at=122.0)
    (row,) = store.devices()
    assert (row["status"], row["boot_id"], row["status_since"]) == ("online", "B", 121.0)
    _write(store, State(status=Status.OFFLINE, boot_id="B", ts=None, booted=119.0), at=300.0)
    (row,) = store.devices()
    assert (row["status"], row["boot_id"], row["status_since"]) == ("offline", "B", 300.0)
    store.close()
