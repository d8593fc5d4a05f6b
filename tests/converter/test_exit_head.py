"""The exit head's size: a FLATTEN head on a large feature map is pooled first."""

from __future__ import annotations

import numpy as np
import pytest

from edge_sdk.passes.early_exit.keras import HeadKind, _head, pool_factor


@pytest.mark.parametrize(
    ("shape", "factor"),
    [
        ((12, 12, 20), 1),  # LeNet-5's pool1 (2,880 values): flattened as before
        ((48, 16), 1),  # the IMU CNN's pool1
        ((24, 24, 8), 2),  # MobileNetV2's block0: 4,608 → 12×12×8
        ((24, 24, 16), 2),  # its stem: 9,216 → 12×12×16
        ((25, 25, 16), 2),  # odd sides pool with "same" padding: 13×13×16
        ((5000, 1), 2),
        ((3, 3, 5000), 3),  # no factor fits: pooled to one position
        ((10,), 1),  # no spatial axis
    ],
)
def test_pool_factor(shape: tuple[int, ...], factor: int) -> None:
    assert pool_factor(shape) == factor


def test_a_large_map_is_pooled_before_the_dense_layer() -> None:
    head = _head((24, 24, 16), 10, HeadKind.FLATTEN, name="exit0")
    dense = head.get_layer("exit0_logits")
    assert dense.kernel.shape == (12 * 12 * 16, 10)
    x = np.random.default_rng(0).normal(size=(3, 24, 24, 16)).astype(np.float32)
    assert head.predict(x, verbose=0).shape == (3, 10)
    small = _head((12, 12, 20), 10, HeadKind.FLATTEN, name="exit1")
    assert small.get_layer("exit1_logits").kernel.shape == (12 * 12 * 20, 10)


def test_the_pooled_head_converts_to_ops_xnnpack_takes() -> None:
    # As for a flattened head (tests/serving/test_cascade.py): one delegate partition.
    from ai_edge_litert.interpreter import Interpreter

    from edge_sdk.passes.quantize.tflite import to_tflite

    it = Interpreter(model_content=to_tflite(_head((24, 24, 8), 10, HeadKind.FLATTEN, name="exit0"), None))
    ops = {op["op_name"] for op in it._get_ops_details()}
    assert {"DEPTHWISE_CONV_2D", "RESHAPE", "FULLY_CONNECTED"} <= ops, ops
    assert not ops & {"SHAPE", "STRIDED_SLICE", "PACK"}, ops


@pytest.mark.parametrize("shape", [(24, 24, 8), (5000, 1)])
def test_the_pool_averages_windows_and_stays_fixed(shape: tuple[int, ...]) -> None:
    head = _head(shape, 10, HeadKind.FLATTEN, name="exit0")
    pool = head.get_layer("exit0_pool")
    assert not pool.trainable_weights
    x = np.random.default_rng(0).normal(size=(2, *shape)).astype(np.float32)
    got = np.asarray(pool(x))
    if len(shape) == 3:
        want = x.reshape(2, 12, 2, 12, 2, 8).mean(axis=(2, 4))
    else:
        want = x.reshape(2, 2500, 2, 1).mean(axis=2)
    np.testing.assert_allclose(got, want, atol=1e-5)
