"""A graph pass plugs into the recipe and is measured like every other step."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.passes.base import PassContext, PassOutcome
from edge_sdk.recipe.pipeline import Job, Recipe, default_passes, optimize


@dataclass(frozen=True)
class ZeroSmallWeights:
    """Sets the smallest ``fraction`` of one layer's kernel to zero (a magnitude prune)."""

    layer: str
    fraction: float
    name: str = "zero-small-weights"

    def apply(self, model: Any, ctx: PassContext) -> PassOutcome:
        import keras

        clone = keras.models.clone_model(model)
        clone.set_weights(model.get_weights())
        kernel, bias = clone.get_layer(self.layer).get_weights()
        cut = np.quantile(np.abs(kernel), self.fraction)
        kernel = np.where(np.abs(kernel) < cut, 0.0, kernel).astype(kernel.dtype)
        clone.get_layer(self.layer).set_weights([kernel, bias])
        return PassOutcome(clone, {"zeroed": int((kernel == 0).sum())})


def test_a_pass_is_one_entry_in_the_recipe(keras_cnn: Path, digits: Any, tmp_path: Path) -> None:
    assert default_passes() == ()
    # --force: zeroing 99% of fc1 costs far more than the default budget (see test_budget.py)
    recipe = Recipe(passes=(ZeroSmallWeights("fc1", 0.99),), int8=False, measure_runs=2, force=True)
    job = Job(model=keras_cnn, data=digits.train, eval_data=digits.test,
              out=tmp_path / "p.edgepkg", name="p")
    report = optimize(job, recipe)
    steps = {s.step: s for s in report.steps}
    assert list(steps) == ["baseline", "zero-small-weights", "export tflite float32"]
    pruned = steps["zero-small-weights"]
    assert pruned.note.startswith("zeroed=") and int(pruned.note.split("=")[1]) >= 0.98 * 288 * 64
    # zeroing 99% of fc1 costs accuracy, and the exported model is the pruned one
    assert pruned.accuracy < steps["baseline"].accuracy
    assert abs(steps["export tflite float32"].accuracy - pruned.accuracy) < 1.0
    assert report.recipe["passes"] == ["zero-small-weights"]
    (over,) = report.recipe["budget"]["overruns"]
    assert over["step"] == "zero-small-weights" and over["total_drop_points"] > 1.0
