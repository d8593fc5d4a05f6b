"""The host side of a deployment: which devices, the rollout recorded in the fleet
database, the bundle sent to each device over MQTT (canaries first, see
:mod:`edge_sdk.ota.rollout`) and canaries rolled back when one fails.

``edge deploy`` is a thin command over :func:`deploy`; every status is handed to ``say``
as a JSON-ready dict, in the order it happened.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from device_agent.bundle import read_manifest
from device_agent.errors import EdgeError
from device_agent.mqtt import BrokerOptions
from device_agent.protocol.messages import DeployStatus
from edge_sdk.ota.rollout import Plan, RolloutRecord, initial_phase, plan, run_rollout

Say = Callable[[dict[str, Any]], None]


@dataclass(frozen=True, kw_only=True)
class Deployment:
    """What to send where: the bundle, the devices, and how long to wait for each."""

    bundle: Path
    fleet: str
    targets: tuple[str, ...]
    group: str = ""  # the --group or --device the rollout is recorded under
    canary_percent: float = 0.0
    chunk_size: int = 64 * 1024
    timeout_s: float = 300.0
    probation_timeout_s: float = 300.0


def targets(store: Any, device: str | None, group: str | None, devices: str | None) -> list[str]:
    """The devices a deploy reaches: one, a list, or every device of the group's fleet."""
    if device:
        return [device]
    if devices:
        listed = [d.strip() for d in devices.split(",") if d.strip()]
        if listed:
            return listed
    if not group:
        raise EdgeError("deploy: give --device ID, or --group FLEET (optionally with --devices ID,ID,...)")
    known = sorted({r["device"] for r in store.devices() if r["fleet"] == group})
    if not known:
        raise EdgeError(f"deploy --group {group}: the fleet database knows no device in fleet {group!r} "
                        "(is the collector running? or list them with --devices)")
    return known


def deploy(d: Deployment, *, broker: BrokerOptions, store: Any, say: Say) -> RolloutRecord:
    """Record the rollout, send the bundle phase by phase, and return where it ended."""
    from device_agent.update.transport import DeployLink

    manifest = read_manifest(d.bundle)
    rid = f"r{uuid.uuid4().hex[:12]}"
    p = plan(list(d.targets), d.canary_percent)
    _record_start(store, rid, d, manifest.name, manifest.version, p)
    try:
        link = DeployLink(broker)  # one connection for the whole rollout
    except EdgeError as e:
        store.update_rollout(rid, phase="halted", outcome="failed", ts=time.time())
        raise EdgeError(f"deploy: {e}; rollout {rid} marked failed, no device was sent anything") from None
    # Said once connected: a plan that was never carried out is not printed as if it were.
    say({"rollout": rid, "canary": list(p.canary), "rest": list(p.rest)})
    try:
        return _run(d, rid, manifest.version, p, link, store, say)
    finally:
        link.close()


def _record_start(store: Any, rid: str, d: Deployment, name: str, version: str, p: Plan) -> None:
    now = time.time()
    store.start_rollout({
        "rollout_id": rid, "fleet": d.fleet, "bundle": d.bundle.name, "name": name, "version": version,
        "device_group": d.group, "canary_percent": float(d.canary_percent),
        "phase": initial_phase(p).value, "outcome": "running", "started": now, "updated": now,
    }, p.canary, p.rest)  # fmt: skip


def _run(d: Deployment, rid: str, version: str, p: Plan, link: Any, store: Any, say: Say) -> RolloutRecord:
    """The rollout over one open link: send, roll back on a failed canary, record each phase."""
    from device_agent.update.transport import send_bundle, send_rollback

    def show(s: DeployStatus) -> None:
        say(asdict(s))

    def send(device: str, probation: bool) -> DeployStatus:
        return send_bundle(d.bundle, broker=link, fleet=d.fleet, device=device, rollout=rid,
                           chunk_size=d.chunk_size, timeout_s=d.timeout_s, on_status=show,
                           probation_timeout_s=d.probation_timeout_s if probation else None)

    def rollback(device: str) -> DeployStatus:
        s = send_rollback(broker=link, fleet=d.fleet, device=device, rollout=rid, reason="canary failed",
                          version=version)
        show(s)
        return s

    def record(r: RolloutRecord) -> None:
        store.update_rollout(rid, phase=r.phase.value, outcome=r.outcome.value, ts=time.time())

    return run_rollout(RolloutRecord(rid, d.bundle.name, version), p, send, rollback, on_change=record)
