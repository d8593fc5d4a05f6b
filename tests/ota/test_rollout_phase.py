"""A rollout without a canary stage (one device, or --canary 0) is ``direct``: a failed
one is never shown as ``promoted``, at any moment of its record."""

from __future__ import annotations

from device_agent.protocol.messages import DeployStatus
from edge_sdk.ota.rollout import Outcome, Phase, RolloutRecord, initial_phase, plan, run_rollout


def _run(devices: list[str], canary: float, status: str) -> tuple[RolloutRecord, list[str]]:
    seen: list[str] = []
    rec = run_rollout(
        RolloutRecord("r", "b.edgepkg", "1.0.0"), plan(devices, canary),
        lambda d, probation: DeployStatus("r", status, "health check failed"),
        lambda d: DeployStatus("r", "rolled-back", ""),
        on_change=lambda r: seen.append(r.phase.value),
    )  # fmt: skip
    return rec, seen


def test_failed_single_device_rollout_is_direct_and_failed() -> None:
    rec, seen = _run(["pi-01"], 0, "rejected")
    assert (rec.phase, rec.outcome, rec.devices) == (Phase.DIRECT, Outcome.FAILED, {"pi-01": "rejected"})
    assert set(seen) == {"direct"}
    assert initial_phase(plan(["pi-01"], 0)) is Phase.DIRECT


def test_canary_stage_then_promoted() -> None:
    rec, seen = _run(["a", "b", "c", "d"], 25, "probation-passed")
    assert (rec.phase, rec.outcome) == (Phase.PROMOTED, Outcome.COMPLETED)
    assert seen[0] == "canary" and seen[-1] == "promoted" and set(seen) == {"canary", "promoted"}
    rec, seen = _run(["a", "b"], 0, "active")  # the whole group at once, healthy
    assert (rec.phase, rec.outcome, set(seen)) == (Phase.DIRECT, Outcome.COMPLETED, {"direct"})
