"""Distillation recovers a pruned student; early stopping; progress; bad input."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from device_agent.errors import EdgeError
from edge_sdk.model.data import Dataset
from edge_sdk.passes.base import PassContext
from edge_sdk.passes.distill.keras import DistillConfig, DistillPass
from edge_sdk.passes.prune.keras import PruneConfig, PrunePass
from tests.compress.conftest import context, keras_accuracy


@pytest.fixture(scope="module")
def pruned(lenet: Any, digits: Any) -> Any:
    return PrunePass(PruneConfig(ratio=0.6)).apply(lenet, context(digits)).model


def test_distillation_recovers_a_pruned_student(lenet: Any, pruned: Any, digits: Any) -> None:
    seen: list[tuple[str, int, int]] = []
    ctx = context(digits, teacher=lenet, progress=lambda d, i, n: seen.append((d, i, n)))
    out = DistillPass(DistillConfig(epochs=12, patience=3)).apply(pruned, ctx)
    teacher = keras_accuracy(lenet, digits.x_test, digits.y_test)
    before = keras_accuracy(pruned, digits.x_test, digits.y_test)
    after = keras_accuracy(out.model, digits.x_test, digits.y_test)
    print(f"prune 0.6 then distill: teacher {teacher:.4f}, pruned {before:.4f}, distilled {after:.4f}; {out.changes}")
    assert after > before
    assert after >= teacher - 0.02
    assert seen[0][1:] == (0, 12) and seen[-1] == ("distill: epochs", 12, 12)
    # Each epoch's line carries the validation accuracy the early stopping watches.
    assert seen[0][0] == f"distill: epochs, validation {100 * out.changes['initial_val_accuracy']:.1f}%"
    assert out.changes["best_val_accuracy"] >= out.changes["initial_val_accuracy"]


def test_early_stopping_keeps_best_and_works_without_labels(lenet: Any, pruned: Any, digits: Any) -> None:
    ctx = context(digits, teacher=lenet)
    unlabeled = PassContext(
        calibration=Dataset(ctx.calibration.x, None, "cal"),
        validation=Dataset(ctx.validation.x, None, "val"),
        teacher=lenet,
    )
    # a learning rate far too high makes the validation loss worse: training must stop
    out = DistillPass(DistillConfig(epochs=10, patience=1, learning_rate=5.0)).apply(pruned, unlabeled)
    assert out.changes["epochs"] < 10 and "stopped early" in out.notes[0]
    # the kept weights are the best seen, not the diverged last ones
    agree = np.mean(np.argmax(out.model.predict(digits.x_test, verbose=0), 1)
                    == np.argmax(lenet.predict(digits.x_test, verbose=0), 1))
    assert agree > 0.6


def test_no_teacher_and_bad_config(pruned: Any, digits: Any) -> None:
    with pytest.raises(EdgeError, match="no teacher"):
        DistillPass().apply(pruned, context(digits))
    with pytest.raises(EdgeError, match="temperature"):
        DistillConfig(temperature=0)
    with pytest.raises(EdgeError, match="alpha"):
        DistillConfig(alpha=1.5)


def test_mixup_blends_match_the_teacher_between_samples(lenet: Any, pruned: Any, digits: Any) -> None:
    ctx = context(digits, teacher=lenet)
    out = DistillPass(DistillConfig(epochs=4, patience=4, mixup=0.4)).apply(pruned, ctx)
    before = keras_accuracy(pruned, digits.x_test, digits.y_test)
    assert keras_accuracy(out.model, digits.x_test, digits.y_test) > before
    blend = DistillPass(DistillConfig(mixup=0.4))._blend(digits.x_test[:8], np.random.default_rng(0))
    assert blend is not None and blend.shape == digits.x_test[:8].shape and blend.dtype == digits.x_test.dtype
    # every blend lies between two inputs of the batch: within the batch's value range
    assert blend.min() >= digits.x_test[:8].min() and blend.max() <= digits.x_test[:8].max()
    assert DistillPass(DistillConfig())._blend(digits.x_test[:8], np.random.default_rng(0)) is None
    with pytest.raises(EdgeError, match="mixup must be >= 0"):
        DistillConfig(mixup=-1)


def test_a_time_budget_stops_the_recovery_after_the_epoch_that_fits(lenet: Any, pruned: Any, digits: Any) -> None:
    from edge_sdk.passes.distill.keras import _over_budget

    ctx = context(digits, teacher=lenet)
    out = DistillPass(DistillConfig(epochs=5, patience=5, time_budget_s=1e-6)).apply(pruned, ctx)
    assert out.changes["epochs"] == 1  # the first epoch always runs: it measures what one costs
    assert out.notes[0].startswith("stopped at the 1e-06 s time budget after 1 of 5 epochs (last epoch ")
    first, total = float(out.changes["first_epoch_seconds"]), float(out.changes["seconds"])
    assert first > 0 and total >= first
    assert _over_budget(10.0, 6.0, 5.0) and not _over_budget(10.0, 5.0, 5.0) and not _over_budget(None, 1e9, 1.0)
    with pytest.raises(EdgeError, match="time_budget_s must be > 0"):
        DistillConfig(time_budget_s=0)
