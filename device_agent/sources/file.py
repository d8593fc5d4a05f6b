"""``file:PATH[?rate=HZ]``: replay an ``.npz`` (array ``x``) or CSV, optionally at a rate."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from device_agent.errors import EdgeError
from device_agent.sources.base import Reading, finite_rows
from device_agent.sources.csv_rows import read_csv


def load_readings(path: Path) -> tuple[np.ndarray, np.ndarray | None, tuple[str | None, ...]]:
    """``x``, labels and, per row, why it is a bad reading (``None`` when it is not)."""
    if not path.is_file():
        raise EdgeError(f"{path}: no such input file")
    if path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                if "x" not in z:
                    raise EdgeError(f"{path}: expected an array named 'x', found {sorted(z.files)}")
                x = np.asarray(z["x"])
                return x, (np.asarray(z["y"]) if "y" in z else None), (None,) * len(x)
        except EdgeError:
            raise
        except Exception as e:  # corrupt zip or array header
            raise EdgeError(f"{path}: not a readable .npz file ({e})") from e
    if path.suffix.lower() == ".csv":
        rows = read_csv(path)
        return rows.x, rows.y, rows.errors
    raise EdgeError(f"{path}: unknown input format {path.suffix!r}; expected .npz or .csv")


class FileSource:
    """Replays rows of a file. ``rate`` (readings per second) paces the replay."""

    def __init__(self, path: Path, *, rate: float | None = None, loop: bool = False):
        self.path = path
        self.x, self.y, self.errors = load_readings(path)
        self.rate = rate
        self.loop = loop
        self._closed = False

    @property
    def backlogged(self) -> bool:
        """Without a rate every row is already waiting: the serve loop may batch them."""
        return not self.rate

    def __iter__(self) -> Iterator[Reading]:
        period = 1.0 / self.rate if self.rate else 0.0
        next_t = time.monotonic()
        name = self.path.name  # looked up once: per row it costs as much as the Reading
        labels = None if self.y is None else [int(v) for v in self.y.tolist()]
        finite = finite_rows(self.x)
        errors = self.errors
        while not self._closed:
            for i, row in enumerate(self.x):
                if self._closed:
                    return
                if period:
                    next_t += period
                    delay = next_t - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                if errors[i] is not None:
                    yield Reading(id=f"{name}:{i}", value=None, error=errors[i])
                    continue
                meta = {} if labels is None else {"label": labels[i]}
                yield Reading(id=f"{name}:{i}", value=row, meta=meta, finite=finite[i])
            if not self.loop:
                return

    def close(self) -> None:
        self._closed = True
