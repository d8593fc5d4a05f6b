"""Telemetry window aggregation: pure (no clock, no IO; timestamps and samples are passed in)."""

from __future__ import annotations

from dataclasses import dataclass

from device_agent.protocol.messages import TelemetryWindow
from device_agent.stats import StatsDelta, percentiles


@dataclass(frozen=True, kw_only=True)
class SystemSample:
    """Process/board readings at the end of a window; ``None`` where not readable."""

    cpu_percent: float | None = None
    rss_bytes: int | None = None
    temperature_c: float | None = None


class WindowAggregator:
    """Accumulates what the serve loop counted into windows; ``close`` returns one window
    and starts the next.

    ``seq`` is monotonic per ``boot_id`` (one process start), so ``(device, boot_id, seq)``
    identifies a window and a missing seq is a visible gap.
    """

    def __init__(self, *, boot_id: str, start: float, seq: int = 0):
        self.boot_id = boot_id
        self.seq = seq
        self._reset(start)

    def _reset(self, start: float) -> None:
        self.start = start
        self.latencies: list[float] = []
        self.inferences = 0
        self.errors = 0
        self.cache_hits = 0
        self.exits: dict[int, int] = {}

    def add(self, delta: StatsDelta) -> None:
        """Counts read from the serve loop's statistics (see ``StatsCursor``)."""
        self.latencies += delta.latencies_ms
        self.inferences += delta.inferences
        self.errors += delta.errors
        self.cache_hits += delta.cache_hits
        for stage, n in delta.exits.items():
            self.exits[stage] = self.exits.get(stage, 0) + n

    def close(
        self,
        end: float,
        *,
        system: SystemSample = SystemSample(),
        dropped: int = 0,
        model_version: str = "",
    ) -> TelemetryWindow:
        """Finish the window at ``end`` and begin the next one there."""
        p = percentiles(self.latencies)
        n = self.inferences
        span = max(end - self.start, 0.0)
        window = TelemetryWindow(
            seq=self.seq,
            boot_id=self.boot_id,
            start=self.start,
            end=max(end, self.start),
            inferences=n,
            errors=self.errors,
            throughput=round(n / span, 3) if span > 0 else 0.0,
            latency_p50=round(p["p50"], 4),
            latency_p95=round(p["p95"], 4),
            latency_p99=round(p["p99"], 4),
            cache_hits=self.cache_hits,
            exits={str(k): v for k, v in sorted(self.exits.items()) if v},
            cpu_percent=system.cpu_percent,
            rss_bytes=system.rss_bytes,
            temperature_c=system.temperature_c,
            dropped=dropped,
            model_version=model_version,
        )
        self.seq += 1
        self._reset(end)
        return window
