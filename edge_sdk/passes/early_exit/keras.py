"""Early exit (BranchyNet-style): heads on a frozen backbone, thresholds from validation.

Given a Keras model whose layers form a chain, this pass

1. picks split points, at named layers or where a fraction of the model's MACs is spent;
2. trains one small head per split by self-distillation: the head learns the full
   model's output distribution from the (frozen) backbone features, so no labels are
   needed;
3. builds each stage as its own model, ``[features, logits]`` for every stage but the
   last (``[logits]``), which is the cascade convention ``device_agent.engine`` runs;
4. calibrates each exit's threshold from the stages' probabilities, so the cascade stays
   within ``max_drop`` points of the full model.

Exporting the stages (through the same exporters as a full model), calibrating on the
converted stages that ship and writing the bundle is :mod:`edge_sdk.recipe.cascade_export`.

TensorFlow is imported inside the functions that need it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

import numpy as np

from device_agent.errors import EdgeError
from device_agent.exit_policy import Criterion, ExitRule, between, cascade_decisions, confidence
from device_agent.protocol.manifest import ExitStage
from edge_sdk.model.data import Dataset
from edge_sdk.model.kind import KerasModel

if TYPE_CHECKING:
    from device_agent.engine import Stage
    from device_agent.runtimes import Model


class HeadKind(str, Enum):
    """The exit head on a feature map: flatten + dense, or global average pool + dense."""

    FLATTEN = "flatten"
    POOL = "pool"


@dataclass(frozen=True, kw_only=True)
class EarlyExitConfig:
    """Where to exit, how to train the heads and how much accuracy the cascade may lose.

    ``at_layers`` names layers after which an exit is placed; when empty, exits go
    after the first layer whose cumulative MACs reach each of ``mac_fractions``.
    ``max_drop`` is in percentage points against the full model on validation.

    ``float_first``: in an int8 TFLite cascade, stage 0's first layer stays float32
    (the stage takes float input; everything after it is int8). That layer sees the
    raw input, with few channels: int8 saves little there, costs a quantization of
    every reading in Python, and LiteRT's XNNPACK int8 kernel for a 1-channel 5×5
    convolution ran 4× slower than float on x86 (digits stage 0: ~113 µs int8, ~26 µs
    with conv1 in float). Its weights are few (500 for the digits conv1).
    """

    at_layers: tuple[str, ...] = ()
    mac_fractions: tuple[float, ...] = (0.2,)
    criterion: Criterion = Criterion.MAX_PROB
    max_drop: float = 0.5
    head: HeadKind = HeadKind.FLATTEN
    epochs: int = 40
    temperature: float = 1.0
    seed: int = 0
    float_first: bool = True

    def __post_init__(self) -> None:
        bad = [f for f in self.mac_fractions if not 0.0 < f < 1.0]
        if bad or not (self.at_layers or self.mac_fractions):
            raise EdgeError(f"early exit: MAC fractions {list(self.mac_fractions)}: expected "
                            "at least one, each strictly between 0 and 1 (e.g. 0.2,0.5)")
        if self.epochs < 1:
            raise EdgeError(f"early exit: head epochs {self.epochs}: expected at least 1")

    def describe(self) -> dict[str, Any]:
        """The settings as plain JSON values (recorded in the report and the manifest)."""
        where: dict[str, Any] = (
            {"at_layers": list(self.at_layers)} if self.at_layers
            else {"mac_fractions": list(self.mac_fractions)}
        )
        return {**where, "criterion": self.criterion.value, "head": self.head.value,
                "epochs": self.epochs, "temperature": self.temperature,
                "float_first": self.float_first}


@dataclass(frozen=True)
class Cascade:
    """The exported stages (Keras models), where they split, and their MACs."""

    stages: tuple[Any, ...]
    split_layers: tuple[str, ...]
    stage_macs: tuple[int, ...]
    criterion: Criterion
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExitCalibration:
    """Thresholds chosen on validation and what the cascade does with them there."""

    exits: tuple[ExitStage, ...]
    full_accuracy: float
    cascade_accuracy: float
    exit_rates: tuple[float, ...]
    mean_macs: float
    full_macs: int = 0
    details: dict[str, Any] = field(default_factory=dict)


# -- structure ---------------------------------------------------------------------------


def chain_layers(model: KerasModel, probe: np.ndarray) -> list[Any]:
    """The model's layers in order, checked to form a chain (rebuilt model == original)."""
    import keras

    layers = [ly for ly in model.layers if not isinstance(ly, keras.layers.InputLayer)]
    rebuilt = _apply(layers, keras.Input(model.input_shape[1:]))
    got = keras.Model(rebuilt[0], rebuilt[-1]).predict(probe, verbose=0)
    want = model.predict(probe, verbose=0)
    if not np.allclose(got, want, atol=1e-4):
        raise EdgeError(
            f"early exit: model {model.name} is not a chain of layers (skip connections or "
            "branches); use a sequential model or name split points inside one chain"
        )
    return layers


def _apply(layers: Sequence[Any], x: Any) -> list[Any]:
    out = [x]
    for ly in layers:
        out.append(ly(out[-1]))
    return out


def layer_macs(layers: Sequence[Any], input_shape: tuple[int, ...]) -> list[int]:
    """Multiply-accumulates per layer: kernel size × output positions (0 for kernel-less)."""
    import keras

    tensors = _apply(layers, keras.Input(input_shape))
    macs = []
    for ly, out in zip(layers, tensors[1:], strict=True):
        kernel = getattr(ly, "kernel", None)
        if kernel is None:
            kernel = getattr(ly, "depthwise_kernel", None)
        if kernel is None:
            macs.append(0)
            continue
        positions = int(np.prod([d for d in out.shape[1:-1]])) if len(out.shape) > 2 else 1
        macs.append(int(np.prod(kernel.shape)) * positions)
    return macs


def check_exit_layers(model: KerasModel, cfg: EarlyExitConfig) -> None:
    """Refuse ``at_layers`` that name no layer of ``model`` (before any expensive work)."""
    names = [ly.name for ly in getattr(model, "layers", [])]
    missing = [n for n in cfg.at_layers if n not in names]
    if missing:
        raise EdgeError(f"--exit-at {','.join(missing)}: no such layer in model "
                        f"{getattr(model, 'name', '?')}; layers are {', '.join(names)}")


def choose_splits(layers: Sequence[Any], macs: Sequence[int], cfg: EarlyExitConfig) -> list[int]:
    """Indices of the layers after which exits go (sorted, never the last layer)."""
    names = [ly.name for ly in layers]
    if cfg.at_layers:
        missing = [n for n in cfg.at_layers if n not in names]
        if missing:
            raise EdgeError(f"early exit: no layer named {missing}; layers are {names}")
        idx = sorted(names.index(n) for n in cfg.at_layers)
    else:
        total = max(sum(macs), 1)
        cum = np.cumsum(macs) / total
        idx = sorted({int(np.argmax(cum >= f)) for f in cfg.mac_fractions if 0 < f < 1})
    if any(i >= len(layers) - 1 for i in idx) or not idx:
        raise EdgeError(
            f"early exit: splits {[names[i] for i in idx]} leave no layers after the exit"
        )
    return idx


# -- heads -------------------------------------------------------------------------------


def _head(feature_shape: tuple[int, ...], classes: int, kind: HeadKind, name: str) -> Any:
    import keras

    inp = keras.Input(feature_shape)
    x = inp
    if len(feature_shape) > 1:
        pool = {2: keras.layers.GlobalAveragePooling1D, 3: keras.layers.GlobalAveragePooling2D}
        if kind == HeadKind.POOL and len(feature_shape) in pool:
            x = pool[len(feature_shape)]()(x)
        else:
            factor = pool_factor(feature_shape)
            if factor > 1:
                x = _mean_pool(keras, feature_shape, factor, f"{name}_pool")(x)
                feature_shape = tuple(int(d) for d in x.shape[1:])
            x = _flatten(keras, feature_shape)(x)
    out = keras.layers.Dense(classes, name=f"{name}_logits")(x)
    return keras.Model(inp, out, name=name)


# Widest flattened feature map a FLATTEN head's dense layer takes before the map is
# average-pooled: a dense layer's weights are read in full for every input, and on a
# large map they cost more than the backbone before the exit. MobileNetV2 (width 0.35)
# on 48×48 digits, float on XNNPACK: the stem and a head on its 24×24×16 map (92,160
# weights, 360 KB) ran 13.5 µs per input, the stem alone 3.5 µs; pooled 2×2 first, 6.6 µs.
FLATTEN_MAX = 4096


def pool_factor(feature_shape: tuple[int, ...], limit: int = FLATTEN_MAX) -> int:
    """Smallest spatial pooling factor (every spatial axis, ``same`` padding) that brings
    a map of ``feature_shape`` (spatial axes, then channels) to at most ``limit`` values
    when flattened; 1 when it fits, or the map has no spatial axis (1-D or 2-D maps only)."""
    if len(feature_shape) not in (2, 3) or int(np.prod(feature_shape)) <= limit:
        return 1
    *spatial, channels = feature_shape
    factor = 2
    while factor < max(spatial) and channels * int(np.prod([-(-d // factor) for d in spatial])) > limit:
        factor += 1
    return factor


def _mean_pool(keras: Any, feature_shape: tuple[int, ...], factor: int, name: str) -> Any:
    """Average of each ``factor``-wide window per channel (zeros past an edge), as a
    frozen depthwise convolution: LiteRT's XNNPACK delegate takes int8 depthwise
    convolutions but not int8 AVERAGE_POOL_2D, which split an int8 stage into partitions
    (MobileNetV2 stem + head, float first layer: AveragePooling2D 11.5 µs, this 5.2 µs;
    float 6.8 and 6.6 µs)."""
    spatial = len(feature_shape) - 1
    layer = {1: keras.layers.DepthwiseConv1D, 2: keras.layers.DepthwiseConv2D}[spatial](
        factor, strides=factor, padding="same", use_bias=False, trainable=False, name=name,
        depthwise_initializer=keras.initializers.Constant(1.0 / factor**spatial),
    )
    return layer


def _flatten(keras: Any, feature_shape: tuple[int, ...]) -> Any:
    """Flatten to a constant width. Keras' ``Flatten`` reads the batch size from the
    tensor's shape at run time (SHAPE, STRIDED_SLICE, PACK in TFLite): XNNPACK does not
    take those ops, so the stage ran as two delegate partitions with the head's input
    copied between them (measured ~0.4 µs of a ~15 µs int8 digits stage 0). A reshape
    to ``(-1, width)`` is one constant-shape RESHAPE and keeps the batch size free."""
    width = int(np.prod(feature_shape))
    return keras.layers.Lambda(
        lambda t: keras.ops.reshape(t, (-1, width)), output_shape=(width,), name="flatten"
    )


def teacher_probabilities(outputs: np.ndarray, temperature: float) -> np.ndarray:
    """The full model's answer as a distribution (outputs may be logits or probabilities)."""
    p = outputs.astype(np.float64)
    if not (p.min() >= 0 and np.allclose(p.sum(axis=1), 1.0, atol=1e-3)):
        p = np.exp(p - p.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
    if temperature != 1.0:
        p = p ** (1.0 / temperature)
        p /= p.sum(axis=1, keepdims=True)
    return p.astype(np.float32)


def train_heads(
    model: KerasModel, layers: Sequence[Any], splits: Sequence[int], x: np.ndarray, cfg: EarlyExitConfig
) -> list[Any]:
    """One head per split, trained on frozen features to match the full model's output."""
    import keras

    keras.utils.set_random_seed(cfg.seed)
    tensors = _apply(layers, keras.Input(model.input_shape[1:]))
    extractor = keras.Model(tensors[0], [tensors[i + 1] for i in splits])
    feats = extractor.predict(x, verbose=0)
    feats = feats if isinstance(feats, list) else [feats]
    target = teacher_probabilities(model.predict(x, verbose=0), cfg.temperature)
    heads = []
    for k, f in enumerate(feats):
        h = _head(tuple(f.shape[1:]), target.shape[1], cfg.head, name=f"exit{k}")
        h.compile(
            optimizer=keras.optimizers.Adam(3e-3),
            loss=keras.losses.CategoricalCrossentropy(from_logits=True),
        )
        h.fit(f, target, epochs=cfg.epochs, batch_size=64, verbose=0)
        heads.append(h)
    return heads


def build_cascade(model: KerasModel, train: Dataset, cfg: EarlyExitConfig) -> Cascade:
    """Split ``model`` into stages with trained exit heads (backbone weights unchanged)."""
    import keras

    layers = chain_layers(model, train.x[:8])
    shape = tuple(model.input_shape[1:])
    macs = layer_macs(layers, shape)
    splits = choose_splits(layers, macs, cfg)
    heads = train_heads(model, layers, splits, train.x, cfg)
    bounds = [-1, *splits, len(layers) - 1]
    stages, stage_macs = [], []
    for k in range(len(bounds) - 1):
        seg = layers[bounds[k] + 1 : bounds[k + 1] + 1]
        inp = keras.Input(shape)
        feats = _apply(seg, inp)[-1]
        seg_macs = sum(macs[bounds[k] + 1 : bounds[k + 1] + 1])
        if k < len(heads):
            outputs = [feats, heads[k](feats)]
            seg_macs += sum(layer_macs(heads[k].layers[1:], tuple(feats.shape[1:])))
            shape = tuple(feats.shape[1:])
        else:
            outputs = [feats]
        stages.append(keras.Model(inp, outputs, name=f"stage{k}"))
        stage_macs.append(int(seg_macs))
    return Cascade(
        tuple(stages), tuple(layers[i].name for i in splits), tuple(stage_macs), cfg.criterion
    )


# -- calibration -------------------------------------------------------------------------


def calibrate(
    stage_probs: Sequence[np.ndarray],
    reference: np.ndarray,
    *,
    criterion: Criterion,
    max_drop: float,
    stage_macs: Sequence[int],
) -> ExitCalibration:
    """Lowest thresholds, exit by exit, that keep accuracy within ``max_drop`` points.

    ``reference`` is the labels (or, without labels, the full model's answers).
    Exits are set greedily from the first (cheapest) one; each keeps the cascade so far
    within budget, so the finished cascade is within budget on this data. Thresholds
    lie between observed scores (:func:`threshold_grid`), never on one.
    """
    full_acc = float((stage_probs[-1].argmax(axis=1) == reference).mean())
    floor = full_acc - max_drop / 100.0
    rules: dict[int, ExitRule] = {}
    for k in range(len(stage_probs) - 1):
        best = 1.0
        for t in threshold_grid(confidence(stage_probs[k], criterion)):
            trial = {**rules, k: ExitRule(stage=k, threshold=float(t), criterion=criterion)}
            _, pred = cascade_decisions(stage_probs, trial)
            if (pred == reference).mean() >= floor:
                best = float(t)
        rules[k] = ExitRule(stage=k, threshold=best, criterion=criterion)
    return with_thresholds(stage_probs, reference, [r.threshold for _, r in sorted(rules.items())],
                           criterion=criterion, stage_macs=stage_macs)


def threshold_grid(scores: np.ndarray, limit: int = 400) -> list[float]:
    """Candidate thresholds, highest first: ``1.0`` (no row exits), then one between each
    pair of neighbouring observed scores and one below the lowest (pure).

    Each lies strictly between two observed float32 scores and on no float32 value
    (:func:`device_agent.exit_policy.between`), so a row that scored exactly an observed
    value exits or goes on alike in a batch and alone. Beyond ``limit`` distinct scores,
    an evenly spaced subset of the gaps keeps calibration linear in data size.
    """
    u = np.unique(np.asarray(scores, dtype=np.float32)).astype(np.float64)
    if len(u) == 0:
        return [1.0]
    gaps = np.arange(1, len(u))
    if len(gaps) > limit:
        gaps = np.unique(np.round(np.linspace(1, len(u) - 1, limit)).astype(np.int64))
    cuts = [between(u[i - 1], u[i]) for i in gaps]
    if u[0] > 0:
        cuts.insert(0, between(0.0, u[0]))
    return [1.0, *reversed(cuts)]


def with_thresholds(
    stage_probs: Sequence[np.ndarray],
    reference: np.ndarray,
    thresholds: Sequence[float],
    *,
    criterion: Criterion,
    stage_macs: Sequence[int],
) -> ExitCalibration:
    """What the cascade does on this data with the given thresholds (one per exit)."""
    full_acc = float((stage_probs[-1].argmax(axis=1) == reference).mean())
    rules = {k: ExitRule(stage=k, threshold=float(t), criterion=criterion)
             for k, t in enumerate(thresholds)}
    stage, pred = cascade_decisions(stage_probs, rules)
    rates = tuple(float((stage == k).mean()) for k in range(len(stage_probs)))
    cum = np.cumsum(stage_macs)
    exits = tuple(
        ExitStage(
            index=k,
            threshold=r.threshold,
            criterion=criterion.value,
            macs=int(cum[k]),
            expected_exit_rate=rates[k],
        )
        for k, r in sorted(rules.items())
    )
    return ExitCalibration(
        exits=exits,
        full_accuracy=full_acc,
        cascade_accuracy=float((pred == reference).mean()),
        exit_rates=rates,
        mean_macs=float(sum(rates[k] * cum[k] for k in range(len(rates)))),
        full_macs=int(cum[-1]),
    )


# -- running stages --------------------------------------------------------------------


def stage_probabilities(models: Sequence[Model], x: np.ndarray) -> list[np.ndarray]:
    """Every stage's probabilities for every row, through the device's own engine code."""
    from device_agent.engine import build_stages

    stages = build_stages(models)
    probs, feats = [], np.asarray(x, dtype=np.float32)
    for st in stages:
        p, f = _run_chunks(st, feats)
        probs.append(p)
        feats = f  # type: ignore[assignment]
    return probs


def _run_chunks(st: Stage, x: np.ndarray, chunk: int = 256) -> tuple[np.ndarray, np.ndarray | None]:
    ps, fs = [], []
    for i in range(0, len(x), chunk):
        p, f = st.run(x[i : i + chunk])
        ps.append(p)
        if f is not None:
            fs.append(f)
    return np.concatenate(ps), (np.concatenate(fs) if fs else None)
