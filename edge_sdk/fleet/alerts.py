"""Alert rules: pure functions from stored rows to alerts (no clock: ``now`` is passed in).

Each alert has a stable key, so evaluating the same data twice stores it once.
Regressions compare a device with its own recent baseline (the median of its previous
windows), not with a fleet-wide threshold: devices differ by hardware and model.
"""

from __future__ import annotations

import itertools
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from device_agent.protocol.messages import Alert, AlertKind, Severity

Row = dict[str, Any]
Keyed = tuple[str, Alert]


@dataclass(frozen=True, kw_only=True)
class AlertRules:
    """Thresholds. ``baseline_windows`` previous windows form a device's baseline."""

    offline_after_s: float = 120.0
    baseline_windows: int = 10
    min_baseline_windows: int = 5
    latency_factor: float = 1.5
    latency_min_ms: float = 0.5
    error_rate_delta: float = 0.05


def _alert(row: Row, kind: AlertKind, sev: Severity, msg: str, ts: float, **kw: float) -> Alert:
    return Alert(
        fleet=row["fleet"], device=row["device"], kind=kind, severity=sev, message=msg, ts=ts, **kw
    )


def offline(devices: Iterable[Row], rules: AlertRules, now: float) -> list[Keyed]:
    """A critical alert per device offline longer than ``offline_after_s``, once per offline spell."""
    out = []
    for d in devices:
        away = now - float(d["status_since"])
        if d["status"] == "offline" and away > rules.offline_after_s:
            how = "clean stop" if d["clean_offline"] else "connection lost"
            a = _alert(d, AlertKind.OFFLINE, Severity.CRITICAL,
                       f"offline for {away:.0f} s ({how})", now, value=away)  # fmt: skip
            out.append((f"offline:{d['fleet']}:{d['device']}:{d['status_since']}", a))
    return out


def _by_boot(windows: Iterable[Row]) -> dict[tuple[str, str, str], list[Row]]:
    groups: dict[tuple[str, str, str], list[Row]] = defaultdict(list)
    for w in windows:
        groups[(w["fleet"], w["device"], w["boot_id"])].append(w)
    for g in groups.values():
        g.sort(key=lambda w: int(w["seq"]))
    return groups


def gaps(windows: Iterable[Row]) -> list[Keyed]:
    """Missing seqs between windows of one boot (a window that never arrived)."""
    out = []
    for (fleet, device, boot), ws in _by_boot(windows).items():
        for prev, cur in itertools.pairwise(ws):
            lo, hi = int(prev["seq"]) + 1, int(cur["seq"]) - 1
            if hi >= lo:
                a = _alert(cur, AlertKind.TELEMETRY_GAP, Severity.WARNING,
                           f"telemetry windows {lo}..{hi} of boot {boot} missing",
                           float(cur["end_ts"]), value=hi - lo + 1)  # fmt: skip
                out.append((f"gap:{fleet}:{device}:{boot}:{lo}-{hi}", a))
    return out


def drops(windows: Iterable[Row]) -> list[Keyed]:
    """Windows that report outbox drops on the device."""
    return [
        (f"drops:{w['fleet']}:{w['device']}:{w['boot_id']}:{w['seq']}",
         _alert(w, AlertKind.OUTBOX_DROPS, Severity.WARNING,
                f"device outbox full: {w['dropped']} windows dropped", float(w["end_ts"]),
                value=float(w["dropped"])))
        for w in windows if int(w["dropped"]) > 0
    ]  # fmt: skip


def _error_rate(w: Row) -> float:
    total = int(w["inferences"]) + int(w["errors"])
    return int(w["errors"]) / total if total else 0.0


def regressions(windows: Iterable[Row], rules: AlertRules) -> list[Keyed]:
    """Latest window of each device against the median of its previous windows."""
    per_device: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for w in windows:
        per_device[(w["fleet"], w["device"])].append(w)
    out: list[Keyed] = []
    for ws in per_device.values():
        ws.sort(key=lambda w: float(w["end_ts"]))
        last, base = ws[-1], [w for w in ws[:-1] if int(w["inferences"]) > 0]
        base = base[-rules.baseline_windows :]
        if len(base) < rules.min_baseline_windows or int(last["inferences"]) == 0:
            continue
        out += _latency(last, base, rules) + _errors(last, base, rules)
    return out


def _key(kind: str, w: Row) -> str:
    return f"{kind}:{w['fleet']}:{w['device']}:{w['boot_id']}:{w['seq']}"


def _latency(last: Row, base: Sequence[Row], rules: AlertRules) -> list[Keyed]:
    ref = statistics.median(float(w["latency_p95"]) for w in base)
    p95 = float(last["latency_p95"])
    if p95 > ref * rules.latency_factor and p95 - ref > rules.latency_min_ms:
        a = _alert(last, AlertKind.LATENCY_REGRESSION, Severity.WARNING,
                   f"p95 latency {p95:.2f} ms vs baseline {ref:.2f} ms",
                   float(last["end_ts"]), value=p95, baseline=ref)  # fmt: skip
        return [(_key("latency", last), a)]
    return []


def _errors(last: Row, base: Sequence[Row], rules: AlertRules) -> list[Keyed]:
    ref = statistics.median(_error_rate(w) for w in base)
    rate = _error_rate(last)
    if rate > ref + rules.error_rate_delta:
        a = _alert(last, AlertKind.ERROR_REGRESSION, Severity.WARNING,
                   f"error rate {rate:.1%} vs baseline {ref:.1%}",
                   float(last["end_ts"]), value=rate, baseline=ref)  # fmt: skip
        return [(_key("errors", last), a)]
    return []


def failed_rollouts(deploys: Iterable[Row]) -> list[Keyed]:
    """A critical alert per deploy that ended rolled back or rejected, naming the device's reason."""
    return [
        (f"rollout:{d['fleet']}:{d['device']}:{d['rollout_id']}:{d['phase']}",
         _alert(d, AlertKind.ROLLOUT_FAILED, Severity.CRITICAL,
                f"rollout {d['rollout_id']} ({d['version']}) {d['phase']}: {d['reason']}",
                float(d["ts"])))
        for d in deploys if d["phase"] in ("rolled-back", "rejected")
    ]  # fmt: skip


def evaluate(
    devices: Sequence[Row],
    windows: Sequence[Row],
    deploys: Sequence[Row],
    rules: AlertRules,
    now: float,
) -> list[Keyed]:
    """Every rule over the given rows."""
    return (
        offline(devices, rules, now) + gaps(windows) + drops(windows)
        + regressions(windows, rules) + failed_rollouts(deploys)
    )  # fmt: skip


def evaluate_store(store: Any, rules: AlertRules, now: float) -> list[Alert]:
    """Run the rules on a store, save the alerts, return those not seen before."""
    found = evaluate(
        store.devices(),
        store.recent_windows(rules.baseline_windows + 50),
        store.deploys(),
        rules,
        now,
    )
    return list(store.add_alerts(found))
