"""Telemetry windows summed into time buckets: the rollups' arithmetic (pure: no IO, no clock).

A bucket keeps sums, never averages, so buckets merge exactly: a minute rollup is the
sum of its windows, an hour the sum of its minutes, a chart point the sum of whatever
rows fall in it. Percentiles cannot be merged exactly; a bucket keeps the
inference-weighted mean of its windows' percentiles (what a chart of a long range
shows) and the worst window's p95/p99 (what an alert on a long range needs).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

# Columns of a rollup row after (res, fleet, device, bucket): summed on merge …
SUM_COLUMNS = (
    "windows", "seconds", "inferences", "errors", "cache_hits", "dropped",
    "lat_n", "p50_sum", "p95_sum", "p99_sum",
    "cpu_n", "cpu_sum", "rss_n", "rss_sum", "temp_n", "temp_sum",
)  # fmt: skip
# … or kept at their maximum.
MAX_COLUMNS = ("p95_max", "p99_max", "end_max")
AGG_COLUMNS = SUM_COLUMNS + MAX_COLUMNS


@dataclass
class Agg:
    """Sums over some windows of one device (see :data:`AGG_COLUMNS`) and exits per stage."""

    values: dict[str, float] = field(default_factory=lambda: dict.fromkeys(AGG_COLUMNS, 0.0))
    exits: dict[str, int] = field(default_factory=dict)

    def add_window(self, w: Mapping[str, Any], exits: Mapping[str, int]) -> None:
        """Add one telemetry window (a row with the telemetry table's columns)."""
        v, n = self.values, int(w["inferences"])
        v["windows"] += 1
        v["seconds"] += max(float(w["end_ts"]) - float(w["start_ts"]), 0.0)
        v["inferences"] += n
        v["errors"] += int(w["errors"])
        v["cache_hits"] += int(w["cache_hits"])
        v["dropped"] += int(w["dropped"])
        if n > 0:  # a window without inferences has no latency to weigh
            v["lat_n"] += n
            for p in ("p50", "p95", "p99"):
                v[f"{p}_sum"] += float(w[f"latency_{p}"]) * n
            v["p95_max"] = max(v["p95_max"], float(w["latency_p95"]))
            v["p99_max"] = max(v["p99_max"], float(w["latency_p99"]))
        for col, key in (("cpu_percent", "cpu"), ("rss_bytes", "rss"), ("temperature_c", "temp")):
            if w[col] is not None:
                v[f"{key}_n"] += 1
                v[f"{key}_sum"] += float(w[col])
        v["end_max"] = max(v["end_max"], float(w["end_ts"]))
        for stage, count in exits.items():
            self.exits[stage] = self.exits.get(stage, 0) + int(count)

    def merge(self, values: Mapping[str, Any], exits: Mapping[str, int]) -> None:
        """Add another bucket's sums (a rollup row)."""
        v = self.values
        for col in SUM_COLUMNS:
            v[col] += float(values[col] or 0)
        for col in MAX_COLUMNS:
            v[col] = max(v[col], float(values[col] or 0))
        for stage, count in exits.items():
            self.exits[stage] = self.exits.get(stage, 0) + int(count)

    def point(self) -> dict[str, Any]:
        """What a chart shows for this bucket: rates and means, ``None`` where unknown."""
        v = self.values
        n, secs = v["inferences"], v["seconds"]
        exited = sum(self.exits.values())
        return {
            "windows": int(v["windows"]), "inferences": int(n), "errors": int(v["errors"]),
            "throughput": n / secs if secs else None,
            "errors_per_min": v["errors"] / secs * 60 if secs else None,
            "latency_p50": _mean(v, "p50_sum", "lat_n"), "latency_p95": _mean(v, "p95_sum", "lat_n"),
            "latency_p99": _mean(v, "p99_sum", "lat_n"),
            "latency_p95_max": v["p95_max"] if v["lat_n"] else None,
            "cache_hit_rate": v["cache_hits"] / n if n else None,
            "exit_rates": {k: c / exited for k, c in sorted(self.exits.items())} if exited else {},
            "cpu_percent": _mean(v, "cpu_sum", "cpu_n"),
            "rss_mb": None if not v["rss_n"] else v["rss_sum"] / v["rss_n"] / 1e6,
            "temperature_c": _mean(v, "temp_sum", "temp_n"),
        }  # fmt: skip


def _mean(v: Mapping[str, float], total: str, count: str) -> float | None:
    return v[total] / v[count] if v[count] else None


def bucket_of(ts: float, res: float) -> float:
    """The start of the ``res``-second bucket holding ``ts`` (buckets align to the epoch)."""
    return float(int(ts // res) * res)


Key = tuple[str, str, float]  # (fleet, device, bucket start)


def rollup_windows(
    rows: Iterable[Mapping[str, Any]], res: float
) -> dict[Key, Agg]:
    """Windows (telemetry rows; ``exits`` as stored JSON) → one :class:`Agg` per device
    and ``res``-second bucket of the window's end."""
    out: dict[Key, Agg] = {}
    for w in rows:
        key = (w["fleet"], w["device"], bucket_of(float(w["end_ts"]), res))
        agg = out.get(key)
        if agg is None:
            agg = out[key] = Agg()
        exits = w["exits"]
        agg.add_window(w, orjson.loads(exits) if isinstance(exits, str | bytes) else exits or {})
    return out


def merge_rows(
    rows: Iterable[Mapping[str, Any]], exits: Mapping[tuple[str, str, float], Mapping[str, int]], res: float
) -> dict[Key, Agg]:
    """Rollup rows (``exits`` keyed by each row's (fleet, device, bucket)) → coarser
    ``res``-second buckets."""
    out: dict[Key, Agg] = {}
    for r in rows:
        row_key = (r["fleet"], r["device"], float(r["bucket"]))
        key = (r["fleet"], r["device"], bucket_of(float(r["bucket"]), res))
        agg = out.get(key)
        if agg is None:
            agg = out[key] = Agg()
        agg.merge(r, exits.get(row_key, {}))
    return out


def chart_step(span_s: float, points: int = 240) -> float:
    """A round bucket width giving at most about ``points`` buckets over ``span_s``."""
    for step in (10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400):
        if span_s / step <= points:
            return float(step)
    return 86400.0 * max(1, round(span_s / 86400 / points))
