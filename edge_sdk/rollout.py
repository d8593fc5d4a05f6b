"""Staged rollouts: deploy to a canary share of a group first, then to the rest.

:func:`plan` is pure (which devices are canaries). :func:`run_rollout` drives a
``send`` callable per device (in the CLI: an MQTT transfer) and a ``rollback`` callable,
so the policy is tested without a broker: any canary that does not become ``active``
halts the rollout and the canaries that did switch are rolled back. Every rollout and
every device's outcome is recorded in SQLite (:class:`RolloutLog`).
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from device_agent.errors import EdgeError
from device_agent.update.chunks import DeployStatus

Send = Callable[[str], DeployStatus]
Rollback = Callable[[str], DeployStatus]


@dataclass(frozen=True)
class Plan:
    canary: tuple[str, ...]
    rest: tuple[str, ...]


def plan(devices: Sequence[str], canary_percent: float) -> Plan:
    """The first ceil(P% of the group) devices (at least one when P > 0) are canaries."""
    if not 0 <= canary_percent <= 100:
        raise EdgeError(f"--canary must be between 0 and 100, got {canary_percent}")
    ordered = tuple(sorted(dict.fromkeys(devices)))
    if not ordered:
        raise EdgeError("the group has no devices")
    n = 0 if canary_percent == 0 else max(1, math.ceil(len(ordered) * canary_percent / 100))
    return Plan(ordered[:n], ordered[n:])


@dataclass
class RolloutRecord:
    rollout: str
    bundle: str
    version: str
    devices: dict[str, str] = field(default_factory=dict)  # device → status
    reasons: dict[str, str] = field(default_factory=dict)
    state: str = "running"  # running / completed / halted


def run_rollout(rec: RolloutRecord, p: Plan, send: Send, rollback: Rollback,
                on_change: Callable[[RolloutRecord], None] = lambda r: None) -> RolloutRecord:
    """Canaries first; promote to the rest only if every canary became active."""
    for phase in (p.canary, p.rest):
        failed = [d for d in phase if not _deploy_one(rec, d, send, on_change)]
        if failed and phase is p.canary and p.rest:
            for d in p.canary:
                if rec.devices.get(d) == "active":
                    s = rollback(d)
                    rec.devices[d], rec.reasons[d] = s.status, "canary halted: " + s.reason
            rec.state = "halted"
            on_change(rec)
            return rec
    rec.state = "completed" if all(s == "active" for s in rec.devices.values()) else "halted"
    on_change(rec)
    return rec


def _deploy_one(rec: RolloutRecord, device: str, send: Send,
                on_change: Callable[[RolloutRecord], None]) -> bool:
    try:
        s = send(device)
        rec.devices[device], rec.reasons[device] = s.status, s.reason
    except EdgeError as e:
        rec.devices[device], rec.reasons[device] = "unreachable", str(e)
    on_change(rec)
    return rec.devices[device] == "active"


class RolloutLog:
    """Rollouts in SQLite (WAL): one row per rollout, updated as devices report."""

    def __init__(self, path: str | Path):
        self.db = sqlite3.connect(str(path))
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS rollouts (rollout TEXT PRIMARY KEY, bundle TEXT, version TEXT,"
            " state TEXT, devices TEXT, reasons TEXT, started REAL, updated REAL)"
        )

    def save(self, r: RolloutRecord) -> None:
        now = time.time()
        with self.db:
            self.db.execute(
                "INSERT INTO rollouts VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(rollout) DO UPDATE SET "
                "state=excluded.state, devices=excluded.devices, reasons=excluded.reasons, updated=excluded.updated",
                (r.rollout, r.bundle, r.version, r.state, json.dumps(r.devices), json.dumps(r.reasons), now, now),
            )

    def all(self) -> list[dict[str, object]]:
        rows = self.db.execute(
            "SELECT rollout, bundle, version, state, devices, reasons, started, updated FROM rollouts ORDER BY started"
        ).fetchall()
        keys = ("rollout", "bundle", "version", "state", "devices", "reasons", "started", "updated")
        out = []
        for row in rows:
            d = dict(zip(keys, row, strict=True))
            d["devices"], d["reasons"] = json.loads(str(d["devices"])), json.loads(str(d["reasons"]))
            out.append(d)
        return out
