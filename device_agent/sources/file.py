"""``file:PATH[?rate=HZ]``: replay an ``.npz`` (array ``x``) or CSV, optionally at a rate."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from device_agent.errors import EdgeError
from device_agent.sources.base import Reading, finite_rows


def load_rows(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    if not path.is_file():
        raise EdgeError(f"{path}: no such input file")
    if path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                if "x" not in z:
                    raise EdgeError(f"{path}: expected an array named 'x', found {sorted(z.files)}")
                return np.asarray(z["x"]), (np.asarray(z["y"]) if "y" in z else None)
        except EdgeError:
            raise
        except Exception as e:  # corrupt zip or array header
            raise EdgeError(f"{path}: not a readable .npz file ({e})") from e
    if path.suffix.lower() == ".csv":
        try:
            data = np.genfromtxt(path, delimiter=",", dtype=np.float32)
        except ValueError as e:
            raise EdgeError(f"{path}: not a numeric CSV ({e})") from e
        return np.atleast_2d(data), None
    raise EdgeError(f"{path}: unknown input format {path.suffix!r}; expected .npz or .csv")


class FileSource:
    """Replays rows of a file. ``rate`` (readings per second) paces the replay."""

    def __init__(self, path: Path, *, rate: float | None = None, loop: bool = False):
        self.path = path
        self.x, self.y = load_rows(path)
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
        while not self._closed:
            for i, row in enumerate(self.x):
                if self._closed:
                    return
                if period:
                    next_t += period
                    delay = next_t - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                meta = {} if labels is None else {"label": labels[i]}
                yield Reading(id=f"{name}:{i}", value=row, meta=meta, finite=finite[i])
            if not self.loop:
                return

    def close(self) -> None:
        self._closed = True
