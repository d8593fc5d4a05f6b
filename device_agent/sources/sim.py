"""``sim:imu`` and ``sim:vibration``: seeded simulated sensors, for demos and tests.

``sim:imu?seed=0&window=100&n=200&rate=50`` yields windows of a 6-axis IMU
(accelerometer + gyroscope) sampled at 10 Hz, laid out like the UEA BasicMotions data
the IMU example trains on: shape (6, window), channels first, so that example's bundle
serves them as they come. Activities (badminton-like swings, running, standing,
walking) are labelled in that example's class order. ``sim:vibration?seed=0&window=256``
yields 1-D vibration windows: a shaft frequency with harmonics, and a bearing-fault
tone in some readings. ``hold=K`` repeats each reading K times with tiny jitter (a
sensor whose value barely changes, to exercise ``--cache near:TOL``). Readings carry
the simulated activity/fault index as ``label``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np

from device_agent.feeds import Described
from device_agent.sources.base import Reading

# Sorted, as the IMU example orders BasicMotions' classes.
IMU_ACTIVITIES = ("badminton", "running", "standing", "walking")
# (step frequency in Hz, accelerometer amplitude, gyroscope amplitude) per activity
_IMU = {0: (1.1, 2.5, 3.0), 1: (2.8, 1.6, 1.2), 2: (0.0, 0.02, 0.02), 3: (1.8, 0.6, 0.5)}


def imu_window(
    rng: np.random.Generator, activity: int, window: int, hz: float = 10.0
) -> np.ndarray:
    """One (6, window) IMU reading for ``activity`` (channels first)."""
    f, acc, gyr = _IMU[activity]
    t = np.arange(window) / hz
    phase = rng.uniform(0, 2 * np.pi, 6)
    amp = np.array([acc] * 3 + [gyr] * 3) * rng.uniform(0.8, 1.2, 6)
    sig = amp * np.sin(2 * np.pi * f * t[:, None] + phase)
    sig[:, 2] += 1.0  # gravity on z
    return np.ascontiguousarray((sig + rng.normal(0, 0.05, sig.shape)).T, dtype=np.float32)


def vibration_window(
    rng: np.random.Generator, fault: int, window: int, fs: float = 2048.0
) -> np.ndarray:
    """One 1-D vibration reading; ``fault`` adds a bearing tone at 7.3× the shaft speed."""
    t = np.arange(window) / fs
    shaft = rng.uniform(24, 26)
    x = sum(np.sin(2 * np.pi * shaft * h * t + rng.uniform(0, 6.3)) / h for h in (1, 2, 3))
    if fault:
        x = x + 0.8 * np.sin(2 * np.pi * shaft * 7.3 * t) * (1 + np.sin(2 * np.pi * shaft * t))
    return (x + rng.normal(0, 0.1, window)).astype(np.float32)


class SimSource:
    """A seeded simulated sensor; ``n`` readings (endless when ``n`` is 0)."""

    def __init__(
        self,
        kind: str,
        *,
        seed: int = 0,
        window: int | None = None,
        n: int = 0,
        rate: float | None = None,
        hold: int = 1,
    ):
        self.kind = kind
        self.rng = np.random.default_rng(seed)
        self.window = window or (100 if kind == "imu" else 256)
        self.n = n
        self.rate = rate
        self.hold = max(1, hold)
        self._closed = False

    def _make(self) -> tuple[np.ndarray, int]:
        if self.kind == "imu":
            label = int(self.rng.integers(len(IMU_ACTIVITIES)))
            return imu_window(self.rng, label, self.window), label
        label = int(self.rng.integers(2))
        return vibration_window(self.rng, label, self.window), label

    def __iter__(self) -> Iterator[Reading]:
        period = 1.0 / self.rate if self.rate else 0.0
        next_t = time.monotonic()
        i = 0
        while not self._closed and (self.n == 0 or i < self.n):
            value, label = self._make()
            for _ in range(self.hold):
                if self._closed or (self.n and i >= self.n):
                    return
                if period:
                    next_t += period
                    time.sleep(max(0.0, next_t - time.monotonic()))
                jitter = self.rng.normal(0, 1e-4, value.shape).astype(np.float32)
                yield Reading(
                    id=f"sim:{self.kind}:{i}", value=value + jitter, meta={"label": label}
                )
                i += 1

    def describe(self) -> Described:
        """Every reading's shape and dtype, known before serving (so a model it cannot feed
        is refused at load)."""
        shape = (6, self.window) if self.kind == "imu" else (self.window,)
        return {"": (shape, "float32")}

    def close(self) -> None:
        """End the iteration before the next reading."""
        self._closed = True
