"""Staged rollouts: deploy to a canary share of a group first, then to the rest.

:func:`plan` is pure (which devices are canaries). :func:`run_rollout` drives a
``send`` callable per device (in the CLI: an MQTT transfer) and a ``rollback`` callable,
so the policy is tested without a broker. Canaries must pass the health check *and*
probation (``probation-passed``); any canary that does not halts the rollout, and every
canary that may have switched is asked to roll back. The rest is then never touched.
The devices of one phase are updated concurrently.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from device_agent.errors import EdgeError
from device_agent.protocol.messages import DeployStatus

# send(device, wait_for_probation) → the device's final (or settled) status
Send = Callable[[str, bool], DeployStatus]
Rollback = Callable[[str], DeployStatus]
MAX_PARALLEL = 8
_HEALTHY = {"active", "probation-passed"}
_BACK = {"rejected", "rolled-back"}  # the device is on its old model


class Phase(str, Enum):
    """Where a staged rollout stands; only ``promoted`` or ``direct`` touch the rest of the group."""

    CANARY = "canary"  # the canaries are being updated
    PROMOTED = "promoted"  # the canaries passed: the rest is being updated
    HALTED = "halted"  # a canary failed: the rest is never touched
    DIRECT = "direct"  # no canary stage (one device, or --canary 0): every device at once


class Outcome(str, Enum):
    """How a rollout ended, or that it has not yet."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


@dataclass(frozen=True)
class Plan:
    """Which devices of the group are canaries and which wait for them."""

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


def initial_phase(p: Plan) -> Phase:
    """The phase a rollout starts in: ``canary`` when it has a canary stage, else ``direct``."""
    return Phase.CANARY if p.canary and p.rest else Phase.DIRECT


@dataclass
class RolloutRecord:
    """What the host saw of one rollout (the collector records the devices' own reports)."""

    rollout: str
    bundle: str
    version: str
    devices: dict[str, str] = field(default_factory=dict)  # device → last status seen
    reasons: dict[str, str] = field(default_factory=dict)
    phase: Phase = Phase.CANARY
    outcome: Outcome = Outcome.RUNNING


def run_rollout(rec: RolloutRecord, p: Plan, send: Send, rollback: Rollback,
                on_change: Callable[[RolloutRecord], None] = lambda r: None) -> RolloutRecord:
    """Canaries first (healthy and through probation); promote to the rest only then."""
    lock = threading.Lock()
    rec.phase = initial_phase(p)
    on_change(rec)
    if rec.phase is Phase.CANARY:
        if not _phase(rec, p.canary, send, True, lock, on_change):
            _halt(rec, p.canary, rollback, lock)
            on_change(rec)
            return rec
        rec.phase = Phase.PROMOTED  # only past a canary stage: a direct rollout never is
        on_change(rec)
    _phase(rec, p.rest if rec.phase is Phase.PROMOTED else p.canary + p.rest, send, False, lock, on_change)
    rec.outcome = Outcome.COMPLETED if all(s in _HEALTHY for s in rec.devices.values()) else Outcome.FAILED
    on_change(rec)
    return rec


def _phase(rec: RolloutRecord, devices: tuple[str, ...], send: Send, probation: bool,
           lock: threading.Lock, on_change: Callable[[RolloutRecord], None]) -> bool:
    def one(d: str) -> bool:
        try:
            s = send(d, probation)
            status, reason = s.status.value, s.reason
        except EdgeError as e:
            status, reason = "unreachable", str(e)
        with lock:
            rec.devices[d], rec.reasons[d] = status, reason
            on_change(rec)
        return status == "probation-passed" if probation else status in _HEALTHY

    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, max(1, len(devices)))) as pool:
        return all(list(pool.map(one, devices)))


def _halt(rec: RolloutRecord, canaries: tuple[str, ...], rollback: Rollback, lock: threading.Lock) -> None:
    """Roll back every canary that may be serving the new model (not those already back)."""
    rec.phase, rec.outcome = Phase.HALTED, Outcome.FAILED
    for d in canaries:
        if rec.devices.get(d) in _BACK:
            continue
        try:
            s = rollback(d)
            status, reason = s.status.value, s.reason
        except EdgeError as e:
            status, reason = "unreachable", f"rollback failed: {e}"
        with lock:
            why = rec.reasons.get(d) or rec.devices.get(d, "no report")
            rec.devices[d], rec.reasons[d] = status, f"canary halted ({why}); {reason}"


# deploy/status phase → the column it counts in (anything else, or no report yet: pending)
_BUCKET = {"active": "active", "probation-passed": "active", "rejected": "rejected",
           "rolled-back": "rolled-back"}


def summarize(row: dict[str, Any]) -> dict[str, Any]:
    """One stored rollout (``Store.rollouts``) → targeted devices counted by their latest
    report: active / rejected / rolled-back / pending, plus phase and outcome."""
    counts = {"active": 0, "rejected": 0, "rolled-back": 0, "pending": 0}
    devices = []
    for d in row["devices"]:
        counts[_BUCKET.get(d["phase"] or "", "pending")] += 1
        devices.append({"device": d["device"], "canary": bool(d["canary"]),
                        "status": d["phase"] or "pending", "reason": d["reason"] or ""})
    return {
        "rollout": row["rollout_id"], "fleet": row["fleet"], "group": row["device_group"],
        "bundle": row["bundle"], "name": row["name"], "version": row["version"],
        "canary_percent": row["canary_percent"], "phase": row["phase"], "outcome": row["outcome"],
        "targeted": len(devices), **counts, "devices": devices,
        "started": row["started"], "updated": row["updated"],
    }  # fmt: skip
