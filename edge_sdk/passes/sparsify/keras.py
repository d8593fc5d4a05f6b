"""Weight sparsity: the smallest-magnitude weights of the large kernels set to exactly zero.

The pruning stage of Deep Compression (Han et al., 2015), done gradually while the
student is distilled from the teacher: the zeroed fraction rises along Zhu & Gupta's
(2017) cubic schedule over the first ``ramp`` of the epochs, masks keep the zeros after
every optimizer step, and the best validation epoch at full sparsity is kept. No runtime
here skips zeros, so shapes, MACs and latency stay; the bytes fall where they ship:
int8 maps an exact zero to zero and the bundle's compressor folds the runs of zeros.
Channel pruning (:mod:`edge_sdk.passes.prune`) removes whole units instead; the two
compose (prune first).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from device_agent.errors import EdgeError
from edge_sdk.passes._keras_train import batches, fitted, outputs_probabilities, selection_metric
from edge_sdk.passes.base import PassContext, PassOutcome
from edge_sdk.passes.distill.keras import DistillConfig, Pair, copy_model, distill_stepper, mixup_blend

SPARSE_LAYERS = {"Conv1D", "Conv2D", "Conv3D", "Dense"}  # depthwise kernels are small and sensitive


@dataclass(frozen=True, kw_only=True)
class SparsifyConfig:
    """Zeroed fraction per kind of kernel, the smallest kernel touched, and the training."""

    dense: float = 0.95  # of each hidden Dense kernel (the output layer's stays dense)
    conv: float = 0.6  # of each convolution kernel
    min_weights: int = 1000  # smaller kernels stay dense: few bytes, much accuracy
    ramp: float = 0.6  # the share of the epochs over which sparsity rises to its target
    distill: DistillConfig = field(default_factory=lambda: DistillConfig(epochs=40, patience=6, mixup=0.4))

    def __post_init__(self) -> None:
        for what, v in (("dense", self.dense), ("conv", self.conv)):
            if not 0.0 <= v < 1.0:
                raise EdgeError(f"sparsify: {what} fraction must be in [0, 1), got {v}")
        if not 0.0 < self.ramp <= 1.0:
            raise EdgeError(f"sparsify: ramp must be in (0, 1], got {self.ramp}")


def schedule(target: float, epoch: int, ramp_epochs: int) -> float:
    """Zhu & Gupta's cubic schedule: the fraction zeroed after ``epoch`` (0-based) epochs
    of ``ramp_epochs``; fast at first, when the network has most redundancy to give."""
    done = min(1.0, (epoch + 1) / max(1, ramp_epochs))
    return target * (1.0 - (1.0 - done) ** 3)


def magnitude_mask(w: np.ndarray, fraction: float) -> np.ndarray:
    """1 where ``w`` is kept, 0 for the ``fraction`` of weights smallest in magnitude."""
    k = round(fraction * w.size)
    if k == 0:
        return np.ones_like(w, dtype=np.float32)
    order = np.argsort(np.abs(w), axis=None, kind="stable")
    mask = np.ones(w.size, dtype=np.float32)
    mask[order[:k]] = 0.0
    return mask.reshape(w.shape)


@dataclass
class SparsifyPass:
    """Distil a copy of the model while zeroing the smallest weights of its large kernels."""

    config: SparsifyConfig = field(default_factory=SparsifyConfig)
    name: str = "sparsify"

    def apply(self, model: Any, ctx: PassContext) -> PassOutcome:
        """A copy of ``model`` with the configured fractions of its kernels exactly zero."""
        if ctx.teacher is None:
            raise EdgeError("sparsify: no teacher model in the pass context (the original model)")
        student = copy_model(model)
        targets = self._targets(student)
        if not targets:
            raise EdgeError(f"sparsify: model {model.name!r} has no kernel of {self.config.min_weights}+ weights")
        best, epochs = self._train(student, targets, ctx)
        student.set_weights(best)
        zeros = sum(int(np.sum(v.numpy() == 0)) for v, _ in targets)
        total = sum(int(v.numpy().size) for v, _ in targets)
        return PassOutcome(model=student, changes={"sparse_kernels": len(targets), "zeroed_weights": zeros,
                                                   "of_weights": total, "epochs": epochs})

    def _targets(self, model: Any) -> list[tuple[Any, float]]:
        """(kernel variable, fraction) for every kernel the config zeroes."""
        cfg, out = self.config, []
        layers = list(model.layers)
        for i, layer in enumerate(layers):
            kind = type(layer).__name__
            if kind not in SPARSE_LAYERS or i == len(layers) - 1:
                continue
            frac = cfg.dense if kind == "Dense" else cfg.conv
            kernel = getattr(layer, "kernel", None)
            if kernel is not None and frac > 0 and int(np.prod(kernel.shape)) >= cfg.min_weights:
                out.append((kernel, frac))
        return out

    def _train(self, student: Any, targets: list[tuple[Any, float]], ctx: PassContext) -> tuple[list[Any], int]:
        import keras

        d = self.config.distill
        train, val = fitted(student, ctx.calibration, "sparsify"), fitted(student, ctx.validation, "sparsify")
        rng = np.random.default_rng(ctx.seed)
        it = batches(train, d.batch_size, seed=ctx.seed)
        pair = Pair(student, ctx.teacher, outputs_probabilities(student), outputs_probabilities(ctx.teacher))
        step = distill_stepper(pair, keras.optimizers.Adam(d.learning_rate), temperature=d.temperature,
                               alpha=d.alpha if train.y is not None else 1.0)
        ramp = max(1, round(d.epochs * self.config.ramp))
        steps = max(1, int(np.ceil(len(train) / d.batch_size)))

        best, best_w, stale, epoch = -np.inf, student.get_weights(), 0, 0
        for epoch in range(d.epochs):
            ctx.progress("sparsify: epochs", epoch, d.epochs)
            masks = [magnitude_mask(v.numpy(), schedule(f, epoch, ramp)) for v, f in targets]
            for _ in range(steps):
                x, y = next(it)
                step(x, y, mixup_blend(x, rng, d.mixup))
                for (v, _), m in zip(targets, masks, strict=True):
                    v.assign(v * m)
            if epoch + 1 < ramp:
                continue  # only a student at full sparsity may be kept
            metric = _metric(student, ctx.teacher, val, pair.s_probs)
            if metric > best:
                best, best_w, stale = metric, student.get_weights(), 0
            else:
                stale += 1
                if stale >= d.patience:
                    break
        ctx.progress("sparsify: epochs", d.epochs, d.epochs)
        return best_w, epoch + 1


def _metric(model: Any, teacher: Any, val: Any, probabilities: bool) -> float:
    """Top-1 on the validation split (ties broken by margin, :func:`selection_metric`);
    without labels, agreement with the teacher."""
    out = model.predict(val.x, verbose=0, batch_size=256)
    truth = val.y if val.y is not None else np.argmax(teacher.predict(val.x, verbose=0, batch_size=256), axis=-1)
    return selection_metric(out, truth, probabilities)
