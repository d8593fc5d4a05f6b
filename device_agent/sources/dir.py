"""``dir:PATH``: watch a folder and serve each new ``.npy`` or ``.png`` file once.

Files are picked up in name order by polling (``poll`` seconds, default 0.2); names
starting with ``.`` are skipped, so a writer that writes ``.tmp`` then renames is never
read half-written. An unreadable file becomes an error reading (counted, skipped).
``existing=0`` ignores files already present at start; ``idle=S`` stops after S
seconds without a new file (default: watch until stopped); ``n`` stops after n files.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from device_agent.errors import EdgeError
from device_agent.sources._png import decode_png
from device_agent.sources.base import Reading


def _read_npy(p: Path) -> np.ndarray:
    return np.asarray(np.load(p, allow_pickle=False))


def _read_png(p: Path) -> np.ndarray:
    return decode_png(p.read_bytes())


READERS = {".npy": _read_npy, ".png": _read_png}


class DirSource:
    """Serves each new file in a folder once, in name order, by polling."""

    def __init__(
        self,
        path: Path,
        *,
        poll: float = 0.2,
        existing: bool = True,
        idle: float | None = None,
        n: int = 0,
    ):
        if not path.is_dir():
            raise EdgeError(f"{path}: no such folder to watch (source dir:)")
        self.path = path
        self.poll = poll
        self.idle = idle
        self.n = n
        self._seen: set[str] = set() if existing else {p.name for p in self._candidates()}
        self._closed = False

    def _candidates(self) -> list[Path]:
        return sorted(
            p
            for p in self.path.iterdir()
            if p.suffix.lower() in READERS and not p.name.startswith(".") and p.is_file()
        )

    def __iter__(self) -> Iterator[Reading]:
        last_new = time.monotonic()
        count = 0
        while not self._closed:
            fresh = [p for p in self._candidates() if p.name not in self._seen]
            for p in fresh:
                self._seen.add(p.name)
                yield self._read(p)
                count += 1
                if self.n and count >= self.n:
                    return
            if fresh:
                last_new = time.monotonic()
            elif self.idle is not None and time.monotonic() - last_new > self.idle:
                return
            else:
                time.sleep(self.poll)

    def _read(self, p: Path) -> Reading:
        try:
            value = READERS[p.suffix.lower()](p)
        except (OSError, ValueError, EOFError) as e:
            return Reading(id=p.name, value=None, error=f"{p}: unreadable ({e})")
        return Reading(id=p.name, value=value)

    def close(self) -> None:
        """End the watch: the iterator returns at its next poll."""
        self._closed = True
