"""Weight sparsity: exact zeros in the large kernels, kept through distillation; the schedule."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from device_agent.errors import EdgeError
from edge_sdk.passes.distill.keras import DistillConfig
from edge_sdk.passes.sparsify.keras import SparsifyConfig, SparsifyPass, magnitude_mask, schedule
from tests.compress.conftest import context, keras_accuracy


def test_mask_zeroes_the_smallest_magnitudes() -> None:
    w = np.array([[0.5, -0.1], [0.05, -2.0]], np.float32)
    np.testing.assert_array_equal(magnitude_mask(w, 0.5), [[1, 0], [0, 1]])
    assert magnitude_mask(w, 0.0).all() and magnitude_mask(w, 0.74).sum() == 1  # round(0.74 * 4) = 3 zeroed


def test_cubic_schedule_rises_fast_then_holds() -> None:
    got = [schedule(0.9, e, 10) for e in range(12)]
    assert got[0] == pytest.approx(0.9 * (1 - 0.9**3)) and got[9] == got[11] == pytest.approx(0.9)
    assert all(a < b for a, b in itertools.pairwise(got[:10]))  # increasing up to the target
    assert got[2] - got[1] > got[8] - got[7]  # most of it early


def test_sparsified_student_keeps_exact_zeros_and_accuracy(lenet: Any, digits: Any) -> None:
    cfg = SparsifyConfig(dense=0.9, conv=0.5, min_weights=1000,
                         distill=DistillConfig(epochs=6, patience=2, mixup=0.4))
    out = SparsifyPass(cfg).apply(lenet, context(digits, teacher=lenet))
    kernels = {lay.name: lay.kernel.numpy() for lay in out.model.layers if hasattr(lay, "kernel")}
    assert np.mean(kernels["fc1"] == 0) >= 0.9 and np.mean(kernels["c2"] == 0) >= 0.5
    # small kernels (c1: 180 weights) and the output layer stay dense
    assert np.mean(kernels["c1"] == 0) < 0.1 and np.mean(kernels["logits"] == 0) < 0.1
    assert out.changes["sparse_kernels"] == 2
    teacher = keras_accuracy(lenet, digits.x_test, digits.y_test)
    after = keras_accuracy(out.model, digits.x_test, digits.y_test)
    print(f"sparsify: teacher {teacher:.4f}, sparse {after:.4f}; {out.changes}")
    assert after >= teacher - 0.05
    # the input model is untouched
    assert np.mean(lenet.get_layer("fc1").kernel.numpy() == 0) < 0.01


def test_bad_config_and_no_teacher(lenet: Any, digits: Any) -> None:
    with pytest.raises(EdgeError, match="dense fraction must be in"):
        SparsifyConfig(dense=1.0)
    with pytest.raises(EdgeError, match="ramp must be in"):
        SparsifyConfig(ramp=0)
    with pytest.raises(EdgeError, match="no teacher"):
        SparsifyPass().apply(lenet, context(digits))
