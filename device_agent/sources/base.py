"""The source contract: an iterable of readings, closed when the agent stops."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass(slots=True)
class Reading:
    """One raw input from a sensor or file. ``value`` is ``None`` for a reading that
    failed at the source (``error`` says why): the loop counts it and goes on.

    Not frozen, like :class:`~device_agent.sinks.base.Result`: sources build one per
    reading and a frozen dataclass's ``__init__`` costs twice as much; treat it as
    read-only.
    """

    id: str
    value: np.ndarray | None
    meta: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


class Source(Protocol):
    def __iter__(self) -> Iterator[Reading]: ...

    def close(self) -> None: ...
