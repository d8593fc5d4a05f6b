"""Declarative preprocessing: each step, its constants computed once, bad steps refused."""

from __future__ import annotations

import numpy as np
import pytest

from device_agent.errors import BundleError
from device_agent.preprocess import Pipeline, bilinear_matrix, hann, sliding_windows


def test_arithmetic_steps() -> None:
    p = Pipeline.parse(
        [
            {"op": "cast", "dtype": "float32"},
            {"op": "scale", "factor": 0.5, "offset": 1.0},
            {"op": "normalize", "mean": [1.0, 2.0], "std": [2.0, 4.0]},
        ]
    )
    x = np.array([[2, 4], [6, 8]], dtype=np.uint8)
    want = ((x * 0.5 + 1.0) - np.array([1.0, 2.0])) / np.array([2.0, 4.0])
    np.testing.assert_allclose(p(x), want, rtol=1e-6)
    assert p(x).dtype == np.float32


def test_reshape_transpose_round_trip_to_manifest_form() -> None:
    steps = [{"op": "reshape", "shape": [6, 100]}, {"op": "transpose", "axes": [1, 0]}]
    p = Pipeline.parse(steps)
    x = np.arange(600, dtype=np.float32)
    np.testing.assert_array_equal(p(x), x.reshape(6, 100).T)
    assert Pipeline.parse(p.to_dicts()) == p


def test_resize_matches_tensorflow_bilinear() -> None:
    import tensorflow as tf

    rng = np.random.default_rng(0)
    for shape, out in (((8, 8, 1), (28, 28)), ((10, 7, 3), (5, 4)), ((6, 6), (9, 12))):
        x = rng.random(shape, dtype=np.float32)
        got = Pipeline.parse([{"op": "resize", "height": out[0], "width": out[1]}])(x)
        xt = x if x.ndim == 3 else x[..., None]
        want = tf.image.resize(xt, out, method="bilinear", antialias=False).numpy()
        np.testing.assert_allclose(got, want if x.ndim == 3 else want[..., 0], atol=1e-5)


def test_constants_are_built_once_per_shape() -> None:
    bilinear_matrix.cache_clear()
    hann.cache_clear()
    p = Pipeline.parse([{"op": "resize", "height": 16, "width": 16}])
    q = Pipeline.parse([{"op": "fft", "axis": 0}])
    for _ in range(5):
        p(np.ones((8, 8), np.float32))
        q(np.ones(64, np.float32))
    assert bilinear_matrix.cache_info().misses == 1 and bilinear_matrix.cache_info().hits == 9
    assert hann.cache_info().misses == 1 and hann.cache_info().hits == 4


def test_sliding_windows() -> None:
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    w = sliding_windows(x, size=4, stride=3)
    assert w.shape == (3, 4, 2)
    np.testing.assert_array_equal(w[2], x[6:10])
    y = np.arange(30).reshape(2, 15)
    w1 = sliding_windows(y, size=5, stride=5, axis=1)
    assert w1.shape == (3, 2, 5)
    np.testing.assert_array_equal(w1[1], y[:, 5:10])
    with pytest.raises(ValueError, match="at least 4"):
        sliding_windows(x[:3], 4, 1)


def test_fft_and_spectrogram() -> None:
    fs, n = 256, 256
    t = np.arange(n) / fs
    x = np.sin(2 * np.pi * 32 * t).astype(np.float32)
    mag = Pipeline.parse([{"op": "fft", "axis": 0}])(x)
    assert mag.shape == (n // 2 + 1,) and int(mag.argmax()) == 32
    np.testing.assert_allclose(mag, np.abs(np.fft.rfft(x * hann(n))), rtol=1e-4, atol=1e-4)
    spec = Pipeline.parse([{"op": "spectrogram", "frame": 64, "hop": 32, "log": False}])(x)
    assert spec.shape == (7, 33)
    assert (spec.argmax(axis=1) == 8).all()  # 32 Hz at 4 Hz per bin


def test_bad_steps_are_bundle_errors() -> None:
    with pytest.raises(BundleError, match=r"preprocessing\[1\]: unknown step 'blur'; known steps:"):
        Pipeline.parse([{"op": "cast"}, {"op": "blur"}])
    with pytest.raises(BundleError, match="unknown field"):
        Pipeline.parse([{"op": "scale", "factr": 2}])
    with pytest.raises(BundleError, match="needs an 'op'"):
        Pipeline.parse([{"factor": 2}])
    with pytest.raises(BundleError, match="std must not contain 0"):
        Pipeline.parse([{"op": "normalize", "mean": [0], "std": [0]}])
    with pytest.raises(BundleError, match="'resize'"):
        Pipeline.parse([{"op": "resize", "height": 4}])
