"""The contract every optimization pass follows.

A pass is one file in this package with a frozen config dataclass and a class with a
``name`` and one method, ``apply``. The recipe (``edge_sdk.recipe.pipeline``) runs passes in a
fixed order, measures the model after each, and records what each changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from edge_sdk.model.data import Dataset
from edge_sdk.model.kind import Model

# Progress callback: (description, completed, total). The CLI renders it with rich.
Progress = Callable[[str, int, int], None]


def no_progress(_desc: str, _done: int, _total: int) -> None:
    """The default progress callback: reports nothing."""
    return None


@dataclass(frozen=True)
class PassContext:
    """What a pass may use besides the model: data splits, the teacher, progress."""

    calibration: Dataset
    validation: Dataset
    teacher: Model = None  # the original float model (keras.Model or onnx.ModelProto)
    progress: Progress = no_progress
    seed: int = 0


@dataclass(frozen=True)
class PassOutcome:
    """The transformed model and what the pass itself knows it changed."""

    model: Model
    changes: dict[str, float | int | str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


class GraphPass(Protocol):
    """Transforms a float model (``keras.Model`` or ``onnx.ModelProto``) into another."""

    name: str

    def apply(self, model: Model, ctx: PassContext) -> PassOutcome:
        """Run the pass on ``model``: the new model and what the pass changed."""
