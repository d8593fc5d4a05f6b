"""What the web dashboard shows, as JSON-ready dicts: one function per page part.

Everything here reads the store through its public queries; the HTTP layer
(:mod:`edge_sdk.fleet.http_server`) only routes and serializes. The store is not
thread-safe, so :class:`DashboardData` serializes the HTTP threads' reads on one lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import orjson

from device_agent.protocol import topics
from edge_sdk.fleet.series import chart_step
from edge_sdk.fleet.store import Store

MAX_RANGE_S = 400 * 86400.0


def device_row(d: dict[str, Any], now: float) -> dict[str, Any]:
    """One device of ``Store.devices()`` → the fleet table's row (rates, not raw counts)."""
    n = d["inferences"] or 0
    exits = orjson.loads(d["exits"]) if d["exits"] else {}
    exited = sum(exits.values())
    return {
        "fleet": d["fleet"], "device": d["device"], "status": d["status"],
        "model": d["model_name"], "model_version": d["model_version"],
        "agent_version": d["agent_version"], "boot_id": d["boot_id"],
        "latency_p50_ms": d["latency_p50"], "latency_p95_ms": d["latency_p95"],
        "throughput_per_s": d["throughput"], "inferences": d["inferences"], "errors": d["errors"],
        "cache_hit_rate": (d["cache_hits"] or 0) / n if n else None,
        "exit_rates": {k: c / exited for k, c in sorted(exits.items())} if exited else {},
        "cpu_percent": d["cpu_percent"], "temperature_c": d["temperature_c"],
        "rss_mb": None if d["rss_bytes"] is None else d["rss_bytes"] / 1e6,
        "last_seen": d["last_seen"], "last_seen_s_ago": max(now - float(d["last_seen"]), 0.0),
        "status_since": d["status_since"],
    }  # fmt: skip


def rollout_row(r: dict[str, Any]) -> dict[str, Any]:
    """One stored rollout → its summary with the canaries' progress beside the rest's."""
    from edge_sdk.ota.rollout import summarize

    s = summarize(r)
    for part, canary in (("canary", True), ("rest", False)):
        ds = [d for d in s["devices"] if d["canary"] is canary]
        s[part] = {
            "targeted": len(ds),
            "active": sum(d["status"] in ("active", "probation-passed") for d in ds),
            "failed": sum(d["status"] in ("rejected", "rolled-back") for d in ds),
        }
        s[part]["updating"] = len(ds) - s[part]["active"] - s[part]["failed"] - sum(
            d["status"] == "pending" for d in ds
        )
    return s


class DashboardData:
    """The dashboard's reads over one store (opened by ``open_store``), one at a time."""

    def __init__(self, open_store: Callable[[], Store]):
        self._open = open_store
        self._store: Store | None = None
        self._lock = threading.Lock()

    def _read(self, fn: Callable[[Store], Any]) -> Any:
        with self._lock:
            if self._store is None:
                self._store = self._open()
            try:
                return fn(self._store)
            except Exception:
                self._store.recover()
                raise

    def close(self) -> None:
        """Close the store if it was opened; the next read opens it again."""
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    def fleet(self, now: float) -> dict[str, Any]:
        """The overview page: every device's row as of ``now`` and the fleets they belong to."""
        devices = [device_row(d, now) for d in self._read(lambda s: s.devices())]
        return {"now": now, "devices": devices, "fleets": sorted({d["fleet"] for d in devices})}

    def device(self, fleet: str, device: str, *, start: float, end: float, now: float) -> dict[str, Any] | None:
        """One device: its row, chart series over [start, end], deployments and alerts."""
        topics.check_id(fleet, "fleet")
        topics.check_id(device)
        step = chart_step(end - start)

        def read(s: Store) -> dict[str, Any] | None:
            row = next((d for d in s.device_rows(fleet, device)), None)
            if row is None:
                return None
            return {
                "device": device_row(row, now),
                "series": {"start": start, "end": end, "step": step,
                           "points": s.series(fleet, device, start=start, end=end, step=step)},
                "deploys": s.device_deploys(fleet, device),
                "alerts": s.device_alerts(fleet, device),
            }  # fmt: skip

        return self._read(read)  # type: ignore[no-any-return]

    def alerts(self) -> list[dict[str, Any]]:
        """The 200 latest alerts, for the alerts panel."""
        return self._read(lambda s: s.alerts(limit=200))  # type: ignore[no-any-return]

    def rollouts(self) -> list[dict[str, Any]]:
        """The 20 latest rollouts, newest first, each with its canaries' progress beside the rest's."""
        return [rollout_row(r) for r in self._read(lambda s: s.rollouts(limit=20))][::-1]

    def version(self) -> tuple[Any, ...]:
        """Changes whenever anything the page shows changes (cheap: small tables, primary keys)."""
        return self._read(lambda s: s.change_marker())  # type: ignore[no-any-return]
