"""A serve run's statistics: counts, latencies, exits and cache hits, their percentiles, and the
cursor through which telemetry reads what they gained (the serve loop takes no lock per reading)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from device_agent.sinks.base import Result


def percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99 (and mean) of latency samples in milliseconds; zeros when empty."""
    if not len(samples_ms):
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "mean": 0.0}
    a = np.asarray(samples_ms, dtype=np.float64)
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "mean": float(a.mean())}


# The summary's latency percentiles cover the latest 100,000 to 200,000 results
# (6 MB of Python floats at most); the serve loop trims every TRIM_EVERY results.
LATENCIES_KEPT = 100_000
TRIM_EVERY = 1 << 16


@dataclass
class RunStats:
    """Counts and latencies for one serve run (the summary the CLI prints)."""

    count: int = 0
    errors: int = 0
    correct: int = 0
    labelled: int = 0
    elapsed_s: float = 0.0

    def __post_init__(self) -> None:
        # Written by the serve loop in this order per reading: latency, exit, cache hit
        # (readers on other threads rely on it, see :class:`StatsCursor`).
        self.latencies_ms: list[float] = []
        self.trimmed = 0  # latencies dropped from the front by trim()
        self.exits: dict[int, int] = {}
        self.cache_hits = 0
        self.cache: dict[str, int] = {}
        self.trim_lock = threading.Lock()

    def trim(self) -> None:
        """Keep the latest ``LATENCIES_KEPT`` latencies (at most twice that between trims):
        an agent serving for weeks must not grow a list by every inference it ever ran."""
        if len(self.latencies_ms) > 2 * LATENCIES_KEPT:
            with self.trim_lock:
                drop = len(self.latencies_ms) - LATENCIES_KEPT
                del self.latencies_ms[:drop]
                self.trimmed += drop

    def add(self, result: Result) -> None:
        """Count one served reading."""
        self.count += 1
        self.latencies_ms.append(result.latency_ms)
        exits = self.exits
        exits[result.stage] = exits.get(result.stage, 0) + 1
        if result.cached:
            self.cache_hits += 1
        if result.truth is not None and result.outputs is None:  # a class to score: classifiers only
            self.labelled += 1
            self.correct += int(result.truth == result.index)

    def summary(self) -> dict[str, object]:
        """The run's totals as JSON-ready data: counts, latency percentiles, throughput, exits, cache, accuracy."""
        out: dict[str, object] = {
            "count": self.count,
            "errors": self.errors,
            "latency_ms": percentiles(self.latencies_ms),
            "throughput_per_s": self.count / self.elapsed_s if self.elapsed_s > 0 else 0.0,
            "exits": {str(k): v for k, v in sorted(self.exits.items())},
            "cache_hits": self.cache_hits,
        }
        if self.cache:
            out["cache"] = dict(self.cache)
        if self.labelled:
            out["accuracy"] = self.correct / self.labelled
        return out


@dataclass(frozen=True)
class StatsDelta:
    """What a :class:`RunStats` gained between two reads."""

    inferences: int
    errors: int
    cache_hits: int
    exits: dict[int, int]
    latencies_ms: list[float]


class StatsCursor:
    """Reads what a :class:`RunStats` gained since the last read, from another thread.

    The serve loop never waits for a reader and takes no lock per reading (telemetry
    that observed every result cost ~0.3 µs per inference, 3–5% of a small model's
    throughput). The counts are exact across reads: ``inferences`` is the sum of the new
    exits, and since the loop writes a reading's latency, then its exit, then its cache
    hit, reading them in the reverse order never counts a hit whose exit is unseen. A
    hit written in between two reads of one reading's counters is carried to the next
    delta, so a delta never has more hits than inferences. ``latencies_ms`` may include
    the latency of a reading that the next delta counts, and holds at most the latest
    ``LATENCIES_KEPT``–``2 × LATENCIES_KEPT`` of the delta's latencies.
    """

    def __init__(self, stats: RunStats):
        self.stats = stats
        self._hits = stats.cache_hits
        self._exits = dict(stats.exits)
        self._errors = stats.errors
        with stats.trim_lock:
            self._latencies = stats.trimmed + len(stats.latencies_ms)

    def read(self) -> StatsDelta:
        """What the stats gained since the last read, taken without stopping the serve loop."""
        s = self.stats
        hits = s.cache_hits
        exits = dict(s.exits)  # one C call: a consistent copy
        errors = s.errors
        with s.trim_lock:
            end = s.trimmed + len(s.latencies_ms)
            latencies = s.latencies_ms[max(self._latencies - s.trimmed, 0) : end - s.trimmed]
        new_exits = {k: v - self._exits.get(k, 0) for k, v in exits.items() if v != self._exits.get(k, 0)}
        inferences = sum(new_exits.values())
        new_hits = min(hits - self._hits, inferences)
        delta = StatsDelta(inferences, errors - self._errors, new_hits, new_exits, latencies)
        self._hits += new_hits
        self._exits, self._errors, self._latencies = exits, errors, end
        return delta
