"""``file:PATH[?rate=HZ]``: replay an ``.npz`` (array ``x``) or CSV, optionally at a rate."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from device_agent.errors import EdgeError
from device_agent.feeds import Described
from device_agent.sources.base import Reading, finite_rows

Rows = np.ndarray | dict[str, np.ndarray]


def load_readings(path: Path) -> tuple[Rows, np.ndarray | None, tuple[str | None, ...]]:
    """Rows ``x`` (or one array per input name, first axis = samples), labels and, per row,
    why it is a bad reading (``None`` when it is not)."""
    if not path.is_file():
        raise EdgeError(f"{path}: no such input file")
    if path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                y = np.asarray(z["y"]) if "y" in z else None
                if "x" in z:
                    x = np.asarray(z["x"])
                    return x, y, (None,) * len(x)
                named = _named_rows(path, {k: np.asarray(z[k]) for k in z.files if k != "y"})
                return named, y, (None,) * len(next(iter(named.values())))
        except EdgeError:
            raise
        except Exception as e:  # corrupt zip or array header
            raise EdgeError(f"{path}: not a readable .npz file ({e})") from e
    if path.suffix.lower() == ".csv":
        from device_agent.sources.csv_rows import read_csv  # .csv files only

        rows = read_csv(path)
        return rows.x, rows.y, rows.errors
    raise EdgeError(f"{path}: unknown input format {path.suffix!r}; expected .npz or .csv")


def _named_rows(path: Path, named: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One array per input name; all must hold the same number of samples."""
    if not named:
        raise EdgeError(f"{path}: expected an array 'x' or one array per input name, found none")
    counts = {k: (len(v) if v.ndim else -1) for k, v in named.items()}
    if len(set(counts.values())) != 1 or -1 in counts.values():
        raise EdgeError(f"{path}: every array needs the same number of samples on its first axis, "
                        f"found {counts}")
    return named


class FileSource:
    """Replays rows of a file. ``rate`` (readings per second) paces the replay."""

    def __init__(self, path: Path, *, rate: float | None = None, loop: bool = False):
        self.path = path
        x, self.y, self.errors = load_readings(path)
        self.named = x if isinstance(x, dict) else None
        self.x = next(iter(x.values())) if isinstance(x, dict) else x
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
        finite = finite_rows(self.x) if self.named is None else [False] * len(self.x)
        errors, named = self.errors, self.named
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
                value = row if named is None else {k: v[i] for k, v in named.items()}
                yield Reading(id=f"{name}:{i}", value=value, meta=meta, finite=finite[i])
            if not self.loop:
                return

    def close(self) -> None:
        """Stop the replay (nothing is held open)."""
        self._closed = True

    def describe(self) -> Described:
        """What each reading carries: the sample shape and dtype of every array."""
        if self.named is None:
            return {"": (tuple(self.x.shape[1:]), self.x.dtype.name)}
        return {k: (tuple(v.shape[1:]), v.dtype.name) for k, v in self.named.items()}
