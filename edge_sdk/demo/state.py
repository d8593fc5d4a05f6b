"""What ``edge demo``'s steps share: :class:`DemoState` (kept apart from the step list,
so the step modules import it without importing each other)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_sdk.passes.base import Progress, no_progress


@dataclass
class DemoState:
    """What the steps share: the output folder and each step's result."""

    out: Path
    progress: Progress = no_progress
    say: Callable[[str], None] = print
    results: dict[str, Any] = field(default_factory=dict)
    cleanup: ExitStack = field(default_factory=ExitStack)
