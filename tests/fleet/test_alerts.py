"""Alert rules: pure functions over rows."""

from __future__ import annotations

from typing import Any

from device_agent.protocol.messages import AlertKind
from edge_sdk.fleet.alerts import AlertRules, evaluate


def win(
    seq: int,
    *,
    p95: float = 2.0,
    errors: int = 0,
    n: int = 100,
    dropped: int = 0,
    device: str = "d1",
    boot: str = "b1",
) -> dict[str, Any]:
    return {
        "fleet": "f",
        "device": device,
        "boot_id": boot,
        "seq": seq,
        "end_ts": 100.0 + seq,
        "latency_p95": p95,
        "errors": errors,
        "inferences": n,
        "dropped": dropped,
    }


def kinds(found: list[tuple[str, Any]]) -> list[AlertKind]:
    return [a.kind for _, a in found]


def test_steady_device_raises_nothing() -> None:
    assert evaluate([], [win(i) for i in range(12)], [], AlertRules(), now=200.0) == []


def test_latency_and_error_regressions_against_own_baseline() -> None:
    base = [win(i, p95=2.0 + 0.01 * i) for i in range(10)]
    found = evaluate([], [*base, win(10, p95=5.0, errors=20)], [], AlertRules(), now=200.0)
    assert sorted(k.value for k in kinds(found)) == ["error-regression", "latency-regression"]
    lat = next(a for _, a in found if a.kind == AlertKind.LATENCY_REGRESSION)
    assert lat.value == 5.0 and abs(lat.baseline - 2.045) < 1e-9  # type: ignore[operator]
    # a slow device is not slow against itself
    slow = [win(i, p95=50.0, device="d2") for i in range(11)]
    assert evaluate([], slow, [], AlertRules(), now=200.0) == []
    # too little history: no baseline, no alert
    assert evaluate([], [*base[:3], win(3, p95=9.0)], [], AlertRules(), now=200.0) == []


def test_gaps_drops_offline_and_rollouts() -> None:
    ws = [win(0), win(1), win(4, dropped=7), win(0, boot="b2"), win(2, boot="b2")]
    dev = {
        "fleet": "f",
        "device": "d1",
        "status": "offline",
        "status_since": 10.0,
        "clean_offline": 0,
    }
    dep = {
        "fleet": "f",
        "device": "d1",
        "rollout_id": "r9",
        "version": "2.0.0",
        "phase": "rolled-back",
        "reason": "health",
        "ts": 5.0,
    }
    found = evaluate([dev], ws, [dep], AlertRules(offline_after_s=60), now=100.0)
    keys = sorted(k for k, _ in found)
    assert keys == [
        "drops:f:d1:b1:4",
        "gap:f:d1:b1:2-3",
        "gap:f:d1:b2:1-1",
        "offline:f:d1:10.0",
        "rollout:f:d1:r9:rolled-back",
    ]
    assert evaluate([dev], [], [], AlertRules(offline_after_s=60), now=50.0) == []
