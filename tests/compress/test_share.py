"""Weight sharing on a trained digits net: K values per kernel, int8 export, compression."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from device_agent.errors import EdgeError
from edge_sdk.bundle.writer import compress
from edge_sdk.core.kmeans import KMeansInit
from edge_sdk.passes.share.keras import ShareConfig, SharePass
from tests.compress.conftest import context, keras_accuracy, to_tflite

K = 16


@pytest.fixture(scope="module")
def shared(lenet: Any, digits: Any) -> Any:
    return SharePass(ShareConfig(clusters=K, fine_tune_steps=120)).apply(lenet, context(digits))


def _kernels(model: Any) -> dict[str, np.ndarray]:
    return {lay.name: lay.get_weights()[0] for lay in model.layers if lay.name in ("c1", "c2", "fc1", "logits")}


def test_each_kernel_has_at_most_k_values_and_accuracy_holds(
    lenet: Any, shared: Any, digits: Any
) -> None:
    for name, w in _kernels(shared.model).items():
        assert len(np.unique(w)) <= K, name
    before = keras_accuracy(lenet, digits.x_test, digits.y_test)
    after = keras_accuracy(shared.model, digits.x_test, digits.y_test)
    print(f"share K={K}: accuracy {before:.4f} -> {after:.4f}; {shared.changes} {shared.notes}")
    assert after >= before - 0.02
    assert "fine-tuned" in shared.notes[0]


def test_fine_tuning_lowers_the_loss(lenet: Any, digits: Any) -> None:
    import keras

    ctx = context(digits)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    raw = SharePass(ShareConfig(clusters=4, fine_tune_steps=0)).apply(lenet, ctx).model
    tuned = SharePass(ShareConfig(clusters=4, fine_tune_steps=60)).apply(lenet, ctx).model
    x, y = ctx.validation.x, ctx.validation.y
    l_raw, l_tuned = float(loss(y, raw(x))), float(loss(y, tuned(x)))
    print(f"K=4 validation loss: clustered {l_raw:.4f}, fine-tuned {l_tuned:.4f}")
    assert l_tuned < l_raw
    for w in _kernels(tuned).values():
        assert len(np.unique(w)) <= 4


def test_fine_tuning_follows_the_teacher(lenet: Any, digits: Any) -> None:
    from edge_sdk.passes._keras_train import distill_loss, log_probs

    ctx = context(digits, teacher=lenet)
    raw = SharePass(ShareConfig(clusters=4, fine_tune_steps=0)).apply(lenet, ctx).model
    tuned = SharePass(ShareConfig(clusters=4, fine_tune_steps=60)).apply(lenet, ctx)
    assert tuned.notes == ("centroids fine-tuned for 60 steps on teacher outputs and labels",)
    x, y = ctx.validation.x, ctx.validation.y
    teacher = log_probs(lenet(x), False)

    def loss(m: Any) -> float:
        return float(distill_loss(log_probs(m(x), False), teacher, y, temperature=4.0, alpha=0.7))

    print(f"K=4 validation distillation loss: clustered {loss(raw):.4f}, fine-tuned {loss(tuned.model):.4f}")
    assert loss(tuned.model) < loss(raw)


def test_int8_export_uses_at_most_k_values_and_compresses(
    lenet: Any, shared: Any, digits: Any, tmp_path: Path
) -> None:
    from ai_edge_litert.interpreter import Interpreter

    sizes = {}
    for label, model in (("plain", lenet), ("shared", shared.model)):
        path = to_tflite(model, tmp_path / f"{label}.tflite", int8_data=digits.x_train, per_channel=False)
        interp = Interpreter(model_path=str(path))
        kernels = _int8_kernels(interp, model)
        assert set(kernels) == {"c1", "c2", "fc1", "logits"}
        if label == "shared":
            # c1 is followed by BatchNorm, which the converter folds into it, scaling each
            # output channel: it keeps K values per channel (next test), not per tensor.
            for name in ("c2", "fc1", "logits"):
                assert len(np.unique(kernels[name])) <= K, name
        data = path.read_bytes()
        sizes[label] = (len(data), len(compress(data, _zstd())), len(compress(data, _deflate())))
    print("int8 tflite bytes (raw, zstd, deflate):", sizes)
    # the raw file is the same size; what ships compressed is far smaller
    assert sizes["shared"][1] < 0.75 * sizes["plain"][1]
    assert sizes["shared"][2] < 0.75 * sizes["plain"][2]


def test_per_channel_int8_has_at_most_k_values_per_channel(
    shared: Any, digits: Any, tmp_path: Path
) -> None:
    from ai_edge_litert.interpreter import Interpreter

    path = to_tflite(shared.model, tmp_path / "pc.tflite", int8_data=digits.x_train)
    kernels = _int8_kernels(Interpreter(model_path=str(path)), shared.model)
    assert len(kernels) == 4
    for w in kernels.values():
        for ch in w.reshape(w.shape[0], -1):  # TFLite puts output channels first
            assert len(np.unique(ch)) <= K


def _int8_kernels(interp: Any, model: Any) -> dict[str, np.ndarray]:
    """The int8 weight tensor of each Keras kernel, found by its TFLite shape."""
    want = {}
    for name, w in _kernels(model).items():
        tfl = (w.shape[-1], *w.shape[:-1]) if w.ndim == 4 else (w.shape[1], w.shape[0])
        want[tuple(int(d) for d in tfl)] = name
    out = {}
    for d in interp.get_tensor_details():
        shape = tuple(int(v) for v in d["shape"])
        if d["dtype"] == np.int8 and shape in want:
            out[want[shape]] = interp.get_tensor(d["index"])
    return out


def _zstd() -> Any:
    from device_agent.protocol.manifest import Compression

    return Compression.ZSTD


def _deflate() -> Any:
    from device_agent.protocol.manifest import Compression

    return Compression.DEFLATE


def test_kmeanspp_and_per_layer_counts(lenet: Any, digits: Any) -> None:
    cfg = ShareConfig(clusters=8, layer_clusters=(("fc1", 3),), init=KMeansInit.KMEANS_PP,
                      fine_tune_steps=0)
    out = SharePass(cfg).apply(lenet, context(digits))
    ks = _kernels(out.model)
    assert len(np.unique(ks["fc1"])) <= 3 and len(np.unique(ks["c2"])) <= 8
    assert len(np.unique(ks["c2"])) > 3


@pytest.mark.parametrize("k", [1, 257])
def test_bad_cluster_count(k: int) -> None:
    with pytest.raises(EdgeError, match=r"--share: cluster count must be in 2\.\.256"):
        ShareConfig(clusters=k)


def test_unknown_layer_and_nothing_to_share(lenet: Any, digits: Any) -> None:
    import keras

    with pytest.raises(EdgeError, match="no layer named 'nope'"):
        SharePass(ShareConfig(layer_clusters=(("nope", 4),))).apply(lenet, context(digits))
    m = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten()])
    with pytest.raises(EdgeError, match="no Conv or Dense layer"):
        SharePass().apply(m, context(digits))
