"""Process and board readings for telemetry: CPU %, RSS, temperature (IO adapter)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from device_agent.telemetry.window import SystemSample

THERMAL_ROOT = Path("/sys/class/thermal")


def read_temperature(root: Path = THERMAL_ROOT) -> float | None:
    """The hottest thermal zone in °C, or ``None`` when the board exposes none."""
    best: float | None = None
    for zone in sorted(root.glob("thermal_zone*/temp")):
        try:
            milli = int(zone.read_text().strip())
        except (OSError, ValueError):
            continue
        c = milli / 1000.0
        best = c if best is None else max(best, c)
    return best


def read_rss() -> int | None:
    """Resident set size of this process in bytes (Linux ``/proc/self/statm``)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


class SystemSampler:
    """CPU % of this process between two calls (100 = one core busy), RSS and temperature."""

    def __init__(self) -> None:
        self._last = (time.monotonic(), time.process_time())

    def sample(self) -> SystemSample:
        """CPU % since the previous call, and RSS and temperature now."""
        now, cpu = time.monotonic(), time.process_time()
        wall = now - self._last[0]
        pct = (cpu - self._last[1]) / wall * 100.0 if wall > 0 else 0.0
        self._last = (now, cpu)
        return SystemSample(
            cpu_percent=round(pct, 2), rss_bytes=read_rss(), temperature_c=read_temperature()
        )
