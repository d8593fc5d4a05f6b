"""The fleet as ``edge fleet status`` shows it: one JSON-ready row per device.

Shared by the CLI (tables, ``--json``), ``edge demo`` and the benchmark; the web
dashboard's richer rows (rates instead of counts) are :func:`edge_sdk.fleet.dashboard.device_row`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the CLI imports this module on every command: no database modules yet
    from edge_sdk.fleet.store import Store


def status_rows(store: Store, now: float) -> list[dict[str, Any]]:
    """One JSON-friendly dict per device, ``now`` dating ``last_seen_s_ago``."""
    out = []
    for d in store.devices():
        out.append({
            "fleet": d["fleet"], "device": d["device"], "status": d["status"],
            "model": d["model_name"], "model_version": d["model_version"],
            "latency_p50_ms": d["latency_p50"], "latency_p95_ms": d["latency_p95"],
            "throughput_per_s": d["throughput"], "inferences": d["inferences"],
            "errors": d["errors"],
            "cache_hits": d["cache_hits"], "exits": json.loads(d["exits"]) if d["exits"] else {},
            "last_seen": d["last_seen"], "last_seen_s_ago": round(now - float(d["last_seen"]), 1),
            "boot_id": d["boot_id"], "seq": d["seq"],
        })  # fmt: skip
    return out
