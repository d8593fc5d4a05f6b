"""Small training helpers shared by the Keras passes that fine-tune (share, distill)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from device_agent.errors import EdgeError
from edge_sdk.model.data import Dataset, fit_to_shape
from edge_sdk.model.kind import KerasModel


def outputs_probabilities(model: KerasModel) -> bool:
    """True when the model ends in a softmax (its outputs are probabilities, not logits)."""
    history = getattr(model.outputs[0], "_keras_history", None) if model.outputs else None
    last = history.operation if history is not None else model.layers[-1]
    act = getattr(last, "activation", None)
    name = getattr(act, "__name__", str(act)) if act is not None else ""
    return "softmax" in name or type(last).__name__ == "Softmax"


def log_probs(out: Any, probabilities: bool) -> Any:
    """Log-probabilities from a model's outputs, whether they are logits or probabilities."""
    import tensorflow as tf

    if probabilities:
        return tf.math.log(tf.clip_by_value(out, 1e-7, 1.0))
    return tf.nn.log_softmax(out, axis=-1)


def distill_loss(student_lp: Any, teacher_lp: Any, y: np.ndarray | None, *,
                 temperature: float, alpha: float) -> Any:
    """Hinton et al. (2015): cross-entropy to the teacher's distribution softened by
    ``temperature`` (scaled by T² so its gradients keep their size), mixed ``alpha : 1 -
    alpha`` with the hard labels when there are any. Inputs are log-probabilities."""
    import tensorflow as tf

    t = temperature
    soft_t = tf.nn.softmax(teacher_lp / t, axis=-1)
    soft = -tf.reduce_mean(tf.reduce_sum(soft_t * tf.nn.log_softmax(student_lp / t, axis=-1), axis=-1)) * t * t
    if y is None:
        return soft
    hard = -tf.reduce_mean(tf.gather(student_lp, tf.cast(y, tf.int32), axis=1, batch_dims=1))
    return alpha * soft + (1.0 - alpha) * hard


def batches(ds: Dataset, batch: int, *, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Shuffled batches forever (the caller decides how many steps)."""
    rng = np.random.default_rng(seed)
    while True:
        idx = rng.permutation(len(ds))
        for i in range(0, len(idx), batch):
            j = idx[i : i + batch]
            yield ds.x[j], None if ds.y is None else ds.y[j]


def fitted(model: KerasModel, ds: Dataset, what: str) -> Dataset:
    """``ds`` shaped to the model's input; an error naming ``what`` when it is empty."""
    if len(ds) == 0:
        raise EdgeError(f"{what}: the data set {ds.source} is empty")
    return fit_to_shape(ds, tuple(model.input_shape), what="model")


def accuracy(model: KerasModel, ds: Dataset) -> float:
    """Top-1 accuracy of ``model`` on the labelled ``ds``, as a fraction (not percent)."""
    out = model.predict(ds.x, verbose=0, batch_size=256)
    return float(np.mean(np.argmax(out, axis=-1) == ds.require_labels()))


# Weight of the mean margin in :func:`selection_metric`: below one sample's worth of
# accuracy on any split smaller than 1,000 samples, so it only orders epochs that tie.
MARGIN_WEIGHT = 1e-3


def selection_metric(out: np.ndarray, y: np.ndarray, probabilities: bool) -> float:
    """Top-1 accuracy (a fraction), ties broken by the mean margin of the true class's
    probability over the next one. On a split the model scores 100% on, many epochs tie on
    accuracy; the first of them was kept, often one whose answers sit close to a decision
    boundary that int8 and weight sharing then push samples over. Measured on the digits
    LeNet-5 at 97% weight sparsity (selection split, 524 samples): with 16 clusters and
    int8, 3 samples lost with the first tied epoch kept, 2 with the widest margin (one run,
    on a reduced grid, before the training step was compiled)."""
    p = np.asarray(out, dtype=np.float64)
    if not probabilities:
        p = np.exp(p - p.max(axis=-1, keepdims=True))
        p /= p.sum(axis=-1, keepdims=True)
    rows = np.arange(len(p))
    truth = p[rows, y]
    rest = p.copy()
    rest[rows, y] = -np.inf
    margin = float(np.mean(truth - rest.max(axis=-1))) if p.shape[-1] > 1 else 0.0
    return float(np.mean(np.argmax(p, axis=-1) == y)) + MARGIN_WEIGHT * margin


def compiled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` of array arguments (some may be ``None``) as a TensorFlow graph: traced once
    per pattern of ``None`` arguments, with any batch size (the last batch of an epoch is
    usually smaller, and tracing a MobileNetV2's training step takes seconds). Eager Keras
    dispatches every layer of the student and the teacher from Python at every step; on
    the 48×48 MobileNetV2 of ``benchmarks.search`` that made each recovery take minutes
    (a search was stopped after 9 CPU minutes), compiled it takes 27-38 s."""
    import tensorflow as tf

    graphs: dict[tuple[bool, ...], Any] = {}

    def call(*args: Any) -> Any:
        given = tuple(a is not None for a in args)
        if given not in graphs:
            def body(*present: Any) -> Any:
                it = iter(present)
                return fn(*(next(it) if g else None for g in given))

            specs = [tf.TensorSpec((None, *np.shape(a)[1:]), tf.as_dtype(np.asarray(a).dtype))
                     for a in args if a is not None]
            graphs[given] = tf.function(body, input_signature=specs)
        return graphs[given](*(tf.convert_to_tensor(a) for a in args if a is not None))

    return call
