"""The source contract: an iterable of readings, closed when the agent stops."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from device_agent.feeds import Described, Value


@dataclass(slots=True)
class Reading:
    """One raw input from a sensor or file. ``value`` is ``None`` for a reading that
    failed at the source (``error`` says why): the loop counts it and goes on.

    ``finite``: the source has checked that every value is finite (a file source
    checks all its rows in one vectorized call when it loads them), so the engine
    skips its own per-reading check.

    Not frozen, like :class:`~device_agent.sinks.base.Result`: sources build one per
    reading and a frozen dataclass's ``__init__`` costs twice as much; treat it as
    read-only.
    """

    id: str
    value: Value | None  # one array, or arrays by input name (a model with several inputs)
    meta: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    finite: bool = False


def finite_rows(x: np.ndarray) -> list[bool]:
    """Per row of ``x``: whether it is numeric and every value is finite as float32
    (what the engine checks per reading), in one vectorized call."""
    try:
        with np.errstate(over="ignore"):  # beyond float32's range: inf, so not finite
            f = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError):
        return [False] * len(x)
    if f.ndim == 0 or f.size == 0:
        return [False] * (len(f) if f.ndim else 0)
    ok = np.all(np.isfinite(f.reshape(len(f), -1)), axis=1)
    return [bool(v) for v in np.atleast_1d(ok)]


class Source(Protocol):
    """Where readings come from: iterate for readings; ``close`` (from any thread) ends the iteration."""

    def __iter__(self) -> Iterator[Reading]: ...

    def close(self) -> None:
        """Make the iteration end soon; safe from another thread and more than once."""


def described(source: Source) -> Described | None:
    """What the source's readings carry (input name → sample shape and dtype; ``""`` for
    one unnamed array), when it knows before serving (a file); else ``None``."""
    describe = getattr(source, "describe", None)
    return None if describe is None else describe()  # type: ignore[no-any-return]
