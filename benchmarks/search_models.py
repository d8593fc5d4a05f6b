"""The models and splits :mod:`benchmarks.search` runs the ``--max-drop`` search on.

Each builder trains its model here (seeds the tests do not use) and returns a
:class:`Case`: the saved Keras model, the training data as a ``.npz`` (what the user
gives ``--data``) and a held-out split never given to ``edge optimize``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SEED = 15  # splits and training; the tests use 0
TRAIN = 1400  # of scikit-learn's 1,797 digits; the other 397 are held out


@dataclass(frozen=True)
class Case:
    """One benchmark model: where it is saved, its training data and its held-out split."""

    name: str
    model: Path
    train: Path
    x_test: np.ndarray
    y_test: np.ndarray


def _fit(model: Any, x: np.ndarray, y: np.ndarray, *, epochs: int, lr: float, batch: int) -> None:
    import keras

    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=epochs, batch_size=batch, verbose=0)


def _save(name: str, model: Any, work: Path, x: np.ndarray, y: np.ndarray,
          x_test: np.ndarray, y_test: np.ndarray) -> Case:
    slug = name.replace(" ", "_")  # the bundle's name comes from the file's: no spaces
    path, train = work / f"{slug}.keras", work / f"{slug}-train.npz"
    model.save(path)
    np.savez(train, x=x, y=y)
    return Case(name, path, train, x_test, y_test)


def _digits(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits (k/16 pixels) upsampled to ``size``×``size``, split 1,400 / 397 (seeded)."""
    from sklearn.datasets import load_digits

    from device_agent.preprocess import Pipeline

    d = load_digits()
    up = Pipeline.parse([{"op": "resize", "height": size, "width": size}])
    x = np.stack([up(im / 16.0) for im in d.images]).astype(np.float32)[..., None]
    y = d.target.astype(np.int64)
    idx = np.random.default_rng(SEED).permutation(len(x))
    tr, te = idx[:TRAIN], idx[TRAIN:]
    return x[tr], y[tr], x[te], y[te]


def lenet5(work: Path) -> Case:
    """LeNet-5 (conv 20, conv 50, dense 500, dense 10) on 28×28 digits, 12 epochs."""
    import keras

    from edge_sdk.demo.digits import build_lenet5

    x, y, xt, yt = _digits(28)
    keras.utils.set_random_seed(SEED)
    model = build_lenet5()
    _fit(model, x, y, epochs=12, lr=1e-3, batch=32)
    return _save("LeNet-5", model, work, x, y, xt, yt)


def imu_cnn(work: Path) -> Case:
    """The IMU example's 1-D CNN on aeon's BasicMotions (40 train / 40 test readings of
    6 axes × 100 steps), standardized per axis with training statistics."""
    import keras
    from aeon.datasets import load_basic_motions

    from examples.imu_activity.run import cnn

    xtr, ytr = load_basic_motions(split="train")
    xte, yte = load_basic_motions(split="test")
    classes = sorted(set(ytr))
    to_idx = {c: i for i, c in enumerate(classes)}
    mean, std = xtr.mean(axis=(0, 2), keepdims=True), xtr.std(axis=(0, 2), keepdims=True) + 1e-6
    x = ((xtr - mean) / std).transpose(0, 2, 1).astype(np.float32)
    xt = ((xte - mean) / std).transpose(0, 2, 1).astype(np.float32)
    y, yt = np.array([to_idx[c] for c in ytr]), np.array([to_idx[c] for c in yte])
    keras.utils.set_random_seed(SEED)
    model = cnn(len(classes), 80, x, y)
    return _save("IMU 1-D CNN", model, work, x, y, xt, yt)


def mobilenet_v2(work: Path, *, epochs: int = 12) -> Case:
    """MobileNetV2 (Sandler et al., 2018) at width 0.35 on 48×48 digits."""
    import keras

    x, y, xt, yt = _digits(48)
    keras.utils.set_random_seed(SEED)
    model = build_mobilenet_v2(width=0.35, size=48, classes=10)
    _fit(model, x, y, epochs=epochs, lr=2e-3, batch=32)
    return _save("MobileNetV2", model, work, x, y, xt, yt)


def build_mobilenet_v2(*, width: float, size: int, classes: int) -> Any:
    """MobileNetV2's layout (Table 2 of the paper) as a chain of layers whose inverted
    residual blocks are nested models, so early exit can split it between blocks (the
    early-exit pass takes chains). BatchNorm momentum 0.9: with 1,400 images, 0.99 left
    the moving statistics so far behind that the trained model scored 10% for 5 epochs."""
    import keras

    def div8(v: float) -> int:
        n = max(8, int(v + 4) // 8 * 8)
        return n + 8 if n < 0.9 * v else n

    def bn(name: str) -> Any:
        return keras.layers.BatchNormalization(momentum=0.9, name=name)

    stem = div8(32 * width)
    layers: list[Any] = [keras.Input((size, size, 1)),
                         keras.layers.Conv2D(stem, 3, strides=2, padding="same", use_bias=False, name="stem"),
                         bn("stem_bn"), keras.layers.ReLU(6.0, name="stem_relu")]
    cin, hw, i = stem, (size + 1) // 2, 0
    for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                       (6, 160, 3, 2), (6, 320, 1, 1)):
        for r in range(n):
            stride = s if r == 0 else 1
            layers.append(_inverted_residual(cin, div8(c * width), stride, t, hw, f"block{i}", bn))
            hw, cin, i = (hw + stride - 1) // stride, div8(c * width), i + 1
    layers += [keras.layers.Conv2D(1280, 1, use_bias=False, name="head_conv"), bn("head_bn"),
               keras.layers.ReLU(6.0, name="head_relu"), keras.layers.GlobalAveragePooling2D(name="gap"),
               keras.layers.Dense(classes, name="logits")]
    return keras.Sequential(layers, name="mobilenetv2")


def _inverted_residual(cin: int, cout: int, stride: int, expand: int, hw: int, name: str, bn: Any) -> Any:
    import keras

    inp = keras.Input((hw, hw, cin))
    x = inp
    if expand != 1:
        x = keras.layers.Conv2D(cin * expand, 1, use_bias=False, name=f"{name}_expand")(x)
        x = keras.layers.ReLU(6.0, name=f"{name}_expand_relu")(bn(f"{name}_expand_bn")(x))
    x = keras.layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"{name}_dw")(x)
    x = keras.layers.ReLU(6.0, name=f"{name}_dw_relu")(bn(f"{name}_dw_bn")(x))
    x = bn(f"{name}_project_bn")(keras.layers.Conv2D(cout, 1, use_bias=False, name=f"{name}_project")(x))
    if stride == 1 and cin == cout:
        x = keras.layers.Add(name=f"{name}_add")([inp, x])
    return keras.Model(inp, x, name=name)
