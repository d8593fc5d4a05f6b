"""Weight sharing: each kernel's weights clustered by k-means into K shared values.

After clustering, the centroids are fine-tuned: the gradient of every weight in a
cluster is summed into its centroid (Deep Compression §3.3), so the layer keeps at most
K distinct values while the loss goes down. With the original model as teacher the loss
is distillation's (its softened outputs mixed with the labels): on the digits LeNet-5,
fine-tuning on the labels alone cost half a point of test accuracy that the clustering
itself had not, while the teacher's outputs kept it. An int8 export with one scale per
tensor then has at most K distinct int8 values per kernel, which a general-purpose
compressor (zstd, deflate) exploits.

A sparse kernel (most weights exactly zero, as :mod:`edge_sdk.passes.sparsify` leaves
it) keeps its zeros: only the nonzero weights are clustered, and zero stays a value of
its own that fine-tuning never moves (Deep Compression quantizes the weights pruning
left). Clustered with the zeros, a kernel 97% zero spent its clusters on them and the
fine-tuned centroid nearest zero drifted off it, so the zeros the compressor folds
became a nonzero value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from device_agent.errors import EdgeError
from edge_sdk.core.kmeans import Codebook, KMeansInit, check_clusters, cluster_sums, kmeans_1d
from edge_sdk.model.kind import KerasModel
from edge_sdk.passes._keras_train import (
    batches,
    compiled,
    distill_loss,
    fitted,
    log_probs,
    outputs_probabilities,
)
from edge_sdk.passes.base import PassContext, PassOutcome

SHARED_LAYERS = {
    "Conv1D", "Conv2D", "Conv3D", "Dense", "DepthwiseConv1D", "DepthwiseConv2D",
    "SeparableConv1D", "SeparableConv2D",
}


@dataclass(frozen=True, kw_only=True)
class ShareConfig:
    """Cluster counts (overall or per layer), initialization and the centroid fine-tuning budget."""

    clusters: int = 16
    layer_clusters: tuple[tuple[str, int], ...] = field(default_factory=tuple)
    init: KMeansInit = KMeansInit.LINEAR
    fine_tune_steps: int = 150
    learning_rate: float = 1e-3
    batch_size: int = 64
    temperature: float = 4.0  # distillation loss, when the context has a teacher
    alpha: float = 0.7  # weight of the teacher's term; 1 - alpha goes to the labels

    def __post_init__(self) -> None:
        check_clusters(self.clusters, "--share")
        for name, k in self.layer_clusters:
            check_clusters(k, f"--share for layer {name!r}")
        if self.fine_tune_steps < 0:
            raise EdgeError(f"share: fine_tune_steps must be >= 0, got {self.fine_tune_steps}")


# A kernel with more than this share of exact zeros was sparsified: its zeros stay zero.
SPARSE_KERNEL = 0.5


@dataclass
class _Shared:
    var: Any
    book: Codebook
    adam: _Adam
    zero: int | None = None  # the index of the pinned zero centroid of a sparse kernel


@dataclass
class _Adam:
    """Adam on one centroid vector (numpy; a handful of values per layer)."""

    lr: float
    m: np.ndarray
    v: np.ndarray
    t: int = 0

    def step(self, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        self.t += 1
        self.m = 0.9 * self.m + 0.1 * g
        self.v = 0.999 * self.v + 0.001 * g * g
        mh, vh = self.m / (1 - 0.9**self.t), self.v / (1 - 0.999**self.t)
        return x - self.lr * mh / (np.sqrt(vh) + 1e-8)


@dataclass
class SharePass:
    """Cluster each Conv/Dense kernel into K values and fine-tune the centroids."""

    config: ShareConfig = field(default_factory=ShareConfig)
    name: str = "share"

    def apply(self, model: KerasModel, ctx: PassContext) -> PassOutcome:
        """A copy of ``model`` whose kernels hold K shared values each, centroids fine-tuned."""
        import keras

        shared_model = keras.models.clone_model(model)
        shared_model.set_weights(model.get_weights())
        shared = self._cluster(shared_model, ctx)
        notes = self._fine_tune(shared_model, shared, ctx)
        distinct = max(len(np.unique(s.var.numpy())) for s in shared)
        changes: dict[str, float | int | str] = {
            "shared_kernels": len(shared),
            "clusters": self.config.clusters,
            "max_distinct_values": distinct,
            "shared_weights": sum(int(s.book.labels.size) for s in shared),
        }
        return PassOutcome(model=shared_model, changes=changes, notes=notes)

    def _cluster(self, model: KerasModel, ctx: PassContext) -> list[_Shared]:
        per_layer = dict(self.config.layer_clusters)
        unknown = set(per_layer) - {layer.name for layer in model.layers}
        if unknown:
            raise EdgeError(f"share: no layer named {sorted(unknown)[0]!r} in model {model.name!r}")
        targets = [lay for lay in _flat_layers(model) if type(lay).__name__ in SHARED_LAYERS]
        if not targets:
            raise EdgeError(f"share: model {model.name!r} has no Conv or Dense layer to share")
        out = []
        for i, layer in enumerate(targets):
            ctx.progress("share: clustering", i, len(targets))
            k = per_layer.get(layer.name, self.config.clusters)
            for var in layer.trainable_weights:
                if len(var.shape) < 2:  # biases stay as they are
                    continue
                book, zero = _codebook(var.numpy(), k, self.config.init, ctx.seed)
                var.assign(book.decode().astype(np.float32))
                zeros = np.zeros_like(book.centroids)
                out.append(_Shared(var, book, _Adam(self.config.learning_rate, zeros, zeros.copy()), zero))
        return out

    def _fine_tune(self, model: KerasModel, shared: list[_Shared], ctx: PassContext) -> tuple[str, ...]:
        steps = self.config.fine_tune_steps
        if steps == 0:
            return ("centroids not fine-tuned (fine_tune_steps=0)",)
        target = _loss_target(ctx)
        if target is None:
            return ("centroids not fine-tuned: no labels in the data and no teacher model",)
        self._steps(model, shared, ctx)
        return (f"centroids fine-tuned for {steps} steps on {target}",)

    def _steps(self, model: KerasModel, shared: list[_Shared], ctx: PassContext) -> None:
        import tensorflow as tf

        ds = fitted(model, ctx.calibration, "share")
        probs, steps = outputs_probabilities(model), self.config.fine_tune_steps
        it = batches(ds, self.config.batch_size, seed=ctx.seed)
        variables = [s.var.value for s in shared]

        def grads_of(x: Any, y: Any) -> Any:
            with tf.GradientTape() as tape:
                loss = self._loss(model(x, training=False), x, y, ctx.teacher, probs)
            return tape.gradient(loss, variables)

        gradients = compiled(grads_of)

        for step in range(steps):
            x, y = next(it)
            grads = gradients(x, y)
            for s, g in zip(shared, grads, strict=True):
                k = len(s.book.centroids)
                cg = cluster_sums(s.book.labels, np.asarray(g), k)
                centroids = s.adam.step(s.book.centroids, cg)
                if s.zero is not None:
                    centroids[s.zero] = 0.0
                s.book = Codebook(centroids, s.book.labels)
                s.var.assign(s.book.decode().astype(np.float32))
            if step % 10 == 0:
                ctx.progress("share: fine-tuning centroids", step, steps)

    def _loss(self, out: Any, x: np.ndarray, y: np.ndarray | None, teacher: KerasModel, probs: bool) -> Any:
        """Distillation from the teacher (with the labels when present), else the labels."""
        import tensorflow as tf

        lp = log_probs(out, probs)
        if teacher is not None:
            t_lp = log_probs(teacher(x, training=False), outputs_probabilities(teacher))
            return distill_loss(lp, t_lp, y, temperature=self.config.temperature, alpha=self.config.alpha)
        assert y is not None  # _loss_target: labels or a teacher
        return -tf.reduce_mean(tf.gather(lp, tf.cast(y, tf.int32), axis=1, batch_dims=1))


def _codebook(w: np.ndarray, k: int, init: KMeansInit, seed: int) -> tuple[Codebook, int | None]:
    """``w`` clustered into ``k`` values, and the index of its pinned zero centroid: a sparse
    kernel clusters only its nonzero weights, its zeros labelled with an extra centroid 0."""
    nonzero = w != 0
    if nonzero.mean() >= 1.0 - SPARSE_KERNEL or int(nonzero.sum()) < k:
        return kmeans_1d(w, k, init=init, seed=seed), None
    book = kmeans_1d(w[nonzero], k, init=init, seed=seed)
    labels = np.full(w.shape, k, dtype=book.labels.dtype)
    labels[nonzero] = book.labels
    return Codebook(np.append(book.centroids, 0.0), labels), k


MAX_SHARED_VALUES = 256


def kernels_shared(model: KerasModel) -> bool:
    """True when every Conv/Dense kernel of a Keras model holds at most 256 distinct values
    (as :class:`SharePass` leaves them) while being larger than that (so it is not so by
    chance). Such kernels keep at most K int8 values only with one scale per tensor."""
    if not hasattr(model, "layers"):
        return False
    kernels = [v.numpy() for lay in _flat_layers(model) if type(lay).__name__ in SHARED_LAYERS
               for v in lay.trainable_weights if len(v.shape) >= 2]
    big = [k for k in kernels if k.size > MAX_SHARED_VALUES]
    return bool(big) and all(len(np.unique(k)) <= MAX_SHARED_VALUES for k in big)


def _flat_layers(model: KerasModel) -> list[Any]:
    out = []
    for layer in model.layers:
        out.extend(_flat_layers(layer) if hasattr(layer, "layers") and layer.layers else [layer])
    return out


def _loss_target(ctx: PassContext) -> str | None:
    if ctx.teacher is not None:
        return "teacher outputs and labels" if ctx.calibration.y is not None else "teacher outputs"
    return "labels" if ctx.calibration.y is not None else None

