"""Evaluate a model on labelled data: top-1 accuracy and agreement with a reference.

The math (top-1, accuracy, agreement) is pure and separate from opening models. Any
artifact the SDK knows is accepted: ``.tflite``/``.onnx``/``.edgepkg`` run through the
device agent's own runtimes (so the numbers are what a device computes), Keras models
(``.keras``, ``.h5``, SavedModel folders) through Keras, imported only when needed.
The converter's pipeline uses the percent helpers at the end (``artifact_accuracy``,
``keras_accuracy``) on models it holds as bytes or in memory.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from device_agent.errors import EdgeError, InputError
from device_agent.protocol.manifest import ModelFormat
from device_agent.runtimes import load_model
from edge_sdk.model.data import Dataset, fit_to_shape, load_dataset
from edge_sdk.model.kind import Model

if TYPE_CHECKING:
    from device_agent.engine import Engine

_KERAS_SUFFIXES = {".keras", ".h5", ".hdf5"}


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    """How to evaluate: batch size (models with a fixed batch run one by one) and runtime."""

    batch_size: int = 64
    runtime: str | None = None
    threads: int | None = None
    thresholds: Mapping[int | None, float] = field(default_factory=dict)  # early-exit overrides


@dataclass(frozen=True)
class EvalResult:
    """What ``edge eval`` reports. ``accuracy`` is None only for unlabelled data with a reference."""

    artifact: str
    data: str
    samples: int
    accuracy: float | None
    error_rate: float | None
    correct: int | None
    runtime: str
    batch_size: int
    reference: str | None = None
    agreement: float | None = None
    exits: dict[str, int] | None = None  # inputs answered per cascade stage (device engine)
    # "accuracy" (labels), or "agreement" with recorded outputs (a bundle's validation set)
    measured: str = "accuracy"
    output_kind: str = "classifier"
    warnings: tuple[str, ...] = ()  # e.g. data in another value range than the calibration's
    # Not a classifier, or compared by outputs: the largest |difference| from --reference.
    max_abs_diff: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values, ratios rounded to 6 places so float noise does not show."""
        d = asdict(self)
        for k in ("accuracy", "error_rate", "agreement"):  # 1 - 0.9933... is not 0.00666...71
            if d[k] is not None:
                d[k] = round(d[k], 6)
        return d


# --- pure core -------------------------------------------------------------------------


def predicted_classes(outputs: np.ndarray) -> np.ndarray:
    """Class index per sample from logits or probabilities (first axis = samples)."""
    out = np.asarray(outputs)
    if out.ndim == 0 or len(out) == 0:
        raise EdgeError("the model gave no outputs")
    return out.reshape(len(out), -1).argmax(axis=1)


def accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of ``pred`` equal to ``labels`` (same length, non-empty)."""
    if len(pred) != len(labels) or len(pred) == 0:
        raise EdgeError(f"{len(pred)} predictions for {len(labels)} labels")
    return float(np.mean(np.asarray(pred) == np.asarray(labels)))


def agreement(pred: np.ndarray, reference: np.ndarray) -> float:
    """Fraction of samples where two models pick the same top-1 class."""
    return accuracy(pred, reference)


def batches(n: int, size: int) -> Iterator[slice]:
    """Slices of ``size`` covering ``0..n``, the last one shorter."""
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


# --- models ----------------------------------------------------------------------------


class Predictor(Protocol):
    """Float batch in, float outputs out; ``input_shape`` has -1 for dynamic dims.

    ``preprocesses``: the predictor applies the bundle's own preprocessing to raw
    readings, so data is passed as read, not fitted to ``input_shape``. ``exits``
    counts the inputs answered at each cascade stage so far.
    """

    runtime: str
    input_shape: tuple[int, ...]
    preprocesses: bool
    exits: dict[int, int] | None

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Outputs for a batch ``x``, one row per sample."""


class _AgentPredictor:
    """The device's engine: manifest preprocessing, then the cascade (or the one model)."""

    def __init__(self, engine: Any):
        self._engine = engine
        self.runtime = str(engine.model.backend)
        self.input_shape = tuple(engine.input_shape)
        self.preprocesses = bool(engine.pipeline)
        self.exits: dict[int, int] | None = {}

    def predict(self, x: np.ndarray) -> np.ndarray:
        preds = self._engine.infer_many(list(x))
        for p in preds:
            if isinstance(p, Exception):
                raise p
        if self.exits is not None:
            for p in preds:
                self.exits[p.stage] = self.exits.get(p.stage, 0) + 1
        return np.stack([np.asarray(p.output).reshape(-1) for p in preds])


class _KerasPredictor:
    runtime = "keras"
    preprocesses = False
    exits: dict[int, int] | None = None

    def __init__(self, model: Model):
        self._model = model
        shape = model.inputs[0].shape
        self.input_shape = tuple(-1 if d is None else int(d) for d in shape)

    def predict(self, x: np.ndarray) -> np.ndarray:
        try:
            return np.asarray(self._model(x, training=False))
        except (ValueError, TypeError) as e:
            raise InputError(f"input does not fit the Keras model: {str(e).splitlines()[0]}") from e


def preferred_format(runtime: str | None) -> ModelFormat | None:
    """The model format a named runtime runs: picks the member of a bundle with both targets."""
    if runtime is None:
        return None
    from device_agent.runtimes import backend

    return backend(runtime).format


def is_keras_path(path: Path) -> bool:
    """Whether ``path`` is a Keras model (``.keras``/``.h5`` or a SavedModel folder), run in Keras."""
    return path.suffix.lower() in _KERAS_SUFFIXES or (path / "saved_model.pb").exists()


@contextlib.contextmanager
def open_predictor(path: Path, config: EvalConfig) -> Iterator[Predictor]:
    """A predictor for any artifact, valid inside the ``with`` (bundles unpack to a temp dir)."""
    if not path.exists():
        raise EdgeError(f"{path}: no such model file")
    if is_keras_path(path):
        from edge_sdk.model.load import load_source

        if config.thresholds:
            raise EdgeError(f"{path}: --exit-threshold applies to early-exit bundles, "
                            "not to a Keras model")
        yield _KerasPredictor(load_source(path).obj)
        return
    from device_agent.engine import EngineOptions
    from device_agent.loader import engine_for
    from device_agent.runtimes import RuntimeOptions

    opts = RuntimeOptions(threads=config.threads)
    prefer = preferred_format(config.runtime)
    eopts = EngineOptions(thresholds=dict(config.thresholds))
    with engine_for(path, runtime=config.runtime, options=opts, prefer=prefer,
                    engine_options=eopts) as engine:
        yield _AgentPredictor(engine)


def predict_all(predictor: Predictor, x: np.ndarray, batch_size: int) -> tuple[np.ndarray, int]:
    """Top-1 per sample, in batches; falls back to one by one if the model fixes its batch.

    Returns the predictions and the batch size actually used.
    """
    size = max(1, batch_size)
    if size > 1 and predictor.input_shape and predictor.input_shape[0] == 1:
        size = 1
    try:
        return _run_batches(predictor, x, size), size
    except InputError:
        if size == 1:
            raise
    # A runtime refused to resize its batch dimension: the model is batch-1 only.
    if predictor.exits is not None:
        predictor.exits.clear()  # the batches that ran are counted again below
    return _run_batches(predictor, x, 1), 1


def _run_batches(predictor: Predictor, x: np.ndarray, size: int) -> np.ndarray:
    out = []
    for s in batches(len(x), size):
        pred = predicted_classes(predictor.predict(x[s]))
        if len(pred) != s.stop - s.start:
            # A graph with a batch size baked into a reshape answers with the wrong count.
            raise InputError(f"model gave {len(pred)} answers for a batch of {s.stop - s.start}")
        out.append(pred)
    return np.concatenate(out)


def bundled_validation(bundle: Path) -> Dataset:
    """The validation set a bundle carries (``validation.npz``), for eval without ``--data``."""
    from device_agent.loader import opened_bundle

    if bundle.suffix.lower() != ".edgepkg":
        raise EdgeError(f"{bundle}: --data is required (only a .edgepkg can carry its own validation set)")
    with opened_bundle(bundle) as b:
        if b.validation_path is None:
            raise EdgeError(f"{bundle}: no --data given and the bundle carries no validation set")
        ds = load_dataset(b.validation_path)
    return Dataset(ds.x, ds.y, f"{bundle}:{b.manifest.validation}", ds.classes)


RECORDED = "the outputs recorded in the bundle at build time"


def evaluate_bundled(bundle: Path, config: EvalConfig | None = None) -> EvalResult:
    """Replay the validation set a bundle carries, as a device's health check does: the
    shipped model on the stored inputs, compared with the outputs recorded when the bundle
    was built. That set has no labels: the result is top-1 agreement, not accuracy."""
    from device_agent.engine import Engine
    from device_agent.loader import opened_bundle
    from device_agent.runtimes import RuntimeOptions
    from device_agent.update.health import load_validation, validation_inputs

    cfg = config or EvalConfig()
    if bundle.suffix.lower() != ".edgepkg":
        raise EdgeError(f"{bundle}: --data is required (only a .edgepkg carries its own validation set)")
    if not bundle.exists():
        raise EdgeError(f"{bundle}: no such model file")
    with opened_bundle(bundle) as b:
        if b.validation_path is None:
            raise EdgeError(f"{bundle}: no --data given and the bundle carries no validation set")
        source = f"{bundle}:{b.manifest.validation}"
        labelled = _labelled(b.validation_path, source)
        if labelled is not None:  # a set with class labels: accuracy, as with --data
            return evaluate(bundle, labelled, config=cfg)
        x, recorded = load_validation(b.validation_path)
        engine = Engine.from_bundle_dir(b.root, b.manifest, runtime=cfg.runtime,
                                        options=RuntimeOptions(threads=cfg.threads),
                                        prefer=preferred_format(cfg.runtime))
        model = engine.model
        got = np.asarray(model.predict1(validation_inputs(x, model.inputs[0])))
    return EvalResult(
        artifact=str(bundle), data=source, samples=len(x), accuracy=None, error_rate=None,
        correct=None, runtime=str(model.backend), batch_size=len(x), reference=RECORDED,
        agreement=agreement(predicted_classes(got), predicted_classes(recorded)),
        measured="agreement",
    )


def _labelled(path: Path, source: str) -> Dataset | None:
    """The validation set as a labelled :class:`Dataset` when its ``y`` holds class labels."""
    with np.load(path, allow_pickle=False) as z:
        y = np.asarray(z["y"]) if "y" in z else None
        if y is None or y.ndim != 1 or y.dtype.kind not in "iu":
            return None
        return Dataset(np.asarray(z["x"]).astype(np.float32), y.astype(np.int64), source)


def evaluate(
    artifact: str | Path,
    data: str | Path | Dataset | None,
    *,
    reference: str | Path | None = None,
    config: EvalConfig | None = None,
) -> EvalResult:
    """Top-1 accuracy of ``artifact`` on ``data`` and, with ``reference``, agreement with it.

    ``data=None`` replays the validation set inside a bundle (:func:`evaluate_bundled`).
    """
    cfg = config or EvalConfig()
    path = Path(artifact)
    if data is None and reference is None:
        recorded = _against_recorded(path, cfg)
        if recorded is not None:
            return recorded
    named = None
    if data is not None and not isinstance(data, Dataset):
        from edge_sdk.model.data import load_named

        named = load_named(data)
    if named is not None or _general(path, cfg):
        return _evaluate_tensors(path, data, named, reference, cfg)
    if data is None:
        if reference is not None:
            raise EdgeError("--reference needs --data (the inputs both models are run on)")
        return evaluate_bundled(path, cfg)
    ds = data if isinstance(data, Dataset) else load_dataset(data)
    if len(ds) == 0:
        raise EdgeError(f"{ds.source}: the data set is empty")
    if ds.y is None and reference is None:
        ds.require_labels()
    with open_predictor(path, cfg) as p:
        x = ds.x if p.preprocesses else fit_to_shape(ds, p.input_shape, what=f"model {path.name}").x
        warns = _range_warnings(p, x)
        pred, used = predict_all(p, x, cfg.batch_size)
        runtime, exits = p.runtime, p.exits
    agree = None
    if reference is not None:
        with open_predictor(Path(reference), replace(cfg, thresholds={})) as r:
            ref_x = ds.x if r.preprocesses else fit_to_shape(
                ds, r.input_shape, what=f"reference {Path(reference).name}").x
            agree = agreement(pred, predict_all(r, ref_x, cfg.batch_size)[0])
    acc = None if ds.y is None else accuracy(pred, ds.y)
    return EvalResult(
        artifact=str(path),
        data=ds.source,
        samples=len(ds),
        accuracy=acc,
        error_rate=None if acc is None else 1.0 - acc,
        correct=None if ds.y is None else int(np.sum(pred == ds.y)),
        runtime=runtime,
        batch_size=used,
        reference=None if reference is None else str(reference),
        agreement=agree,
        exits=None if exits is None else {str(k): v for k, v in sorted(exits.items())},
        warnings=warns,
    )


def _range_warnings(p: Predictor, x: np.ndarray) -> tuple[str, ...]:
    """A bundle records the value range it was calibrated on; data far outside it (raw
    0..255 pixels for a model calibrated on 0..1) is said before its accuracy."""
    from edge_sdk.model.preprocess import range_mismatch, value_range

    engine: Engine | None = getattr(p, "_engine", None)
    if engine is None or engine.manifest is None:
        return ()
    manifest = engine.manifest
    calibrated = manifest.optimization.get("calibration_range") or manifest.optimization.get(
        "recipe", {}).get("calibration_range")
    if not calibrated or len(x) == 0:
        return ()
    try:
        seen = value_range(engine.pipeline.batch(x[:256]) if engine.pipeline else x)
    except (ValueError, IndexError):
        return ()
    why = range_mismatch((float(calibrated[0]), float(calibrated[1])), seen)
    return () if why is None else (why,)


def _general(path: Path, cfg: EvalConfig) -> bool:
    """Whether ``path`` is served by the named-tensor path (several inputs, not a classifier)."""
    if is_keras_path(path) or not path.exists():
        return False
    with open_predictor(path, cfg) as p:
        return bool(p._engine.general)  # type: ignore[attr-defined]


def tensor_outputs(engine: Engine, samples: list[Any]) -> list[np.ndarray]:
    """Every output of each sample, float, flattened: the engine's feeder and model."""
    from device_agent.quant import dequantize

    out = []
    for v in samples:
        raw = engine.model.run_raw(*engine.feeder.tensors(v))
        out.append(np.concatenate([np.asarray(dequantize(r, s), dtype=np.float64).reshape(-1)
                                   for r, s in zip(raw, engine.model.outputs, strict=True)]))
    return out


def _run_tensors(path: Path, samples: list[Any], cfg: EvalConfig) -> tuple[list[np.ndarray], str, str, int]:
    """(outputs per sample, runtime, output kind, first output's size) of ``path``."""
    with open_predictor(path, cfg) as p:
        engine = p._engine  # type: ignore[attr-defined]
        outs = tensor_outputs(engine, samples)
        first = int(np.prod([d if d > 0 else 1 for d in engine.model.outputs[0].shape]))
        return outs, p.runtime, engine.kind.value, first


def _evaluate_tensors(path: Path, data: str | Path | Dataset | None, named: dict[str, np.ndarray] | None,
                      reference: str | Path | None, cfg: EvalConfig) -> EvalResult:
    """Evaluation one sample per call with inputs by name: top-1 for a classifier (on its
    first output), else agreement with ``reference`` as the largest output difference."""
    y = None
    if named is not None:
        n = len(next(iter(named.values())))
        samples: list[Any] = [{k: v[i] for k, v in named.items()} for i in range(n)]
        y = _named_labels(Path(str(data)))
        source = str(data)
    else:
        ds = bundled_validation(path) if data is None else (
            data if isinstance(data, Dataset) else load_dataset(data))
        samples, y, source = list(ds.x), ds.y, ds.source
    outs, runtime, kind, first = _run_tensors(path, samples, cfg)
    if kind != "classifier" and reference is None:
        raise EdgeError(f"{path.name}: a {kind} model has no classes to score against labels; "
                        "give --reference MODEL to compare its outputs with another model's")
    pred = np.array([o[:first].argmax() for o in outs]) if kind == "classifier" else None
    if pred is None:
        y = None  # labels are class ids: they mean nothing to raw, regression or detection outputs
    elif y is None and reference is None:
        raise EdgeError(f"{source}: no labels ('y') and no --reference to compare with")
    agree = diff = None
    if reference is not None:
        ref, _, _, _ = _run_tensors(Path(reference), samples, replace(cfg, thresholds={}))
        diff = max(float(np.max(np.abs(a - b))) if a.shape == b.shape else float("inf")
                   for a, b in zip(outs, ref, strict=True))
        if pred is not None:
            agree = agreement(pred, np.array([o[:first].argmax() for o in ref]))
    acc = None if y is None or pred is None else accuracy(pred, y)
    return EvalResult(
        artifact=str(path), data=source, samples=len(samples), accuracy=acc,
        error_rate=None if acc is None else 1.0 - acc,
        correct=None if acc is None or pred is None or y is None else int(np.sum(pred == y)),
        runtime=runtime, batch_size=1, reference=None if reference is None else str(reference),
        agreement=agree, output_kind=kind, max_abs_diff=diff,
    )


def _against_recorded(path: Path, cfg: EvalConfig) -> EvalResult | None:
    """A packed bundle without ``--data``: its named validation set replayed here against
    the outputs recorded when it was built (``None`` for any other artifact)."""
    from device_agent.protocol.validation import replay
    from device_agent.update.health import load_named_validation

    if path.suffix.lower() != ".edgepkg" or not path.is_file():
        return None
    with open_predictor(path, cfg) as p:
        engine: Any = getattr(p, "_engine", None)
        manifest = None if engine is None else engine.manifest
        if manifest is None or manifest.validation is None:
            return None
        from device_agent.loader import opened_bundle

        with opened_bundle(path) as b:
            named = load_named_validation(b.root / manifest.validation)
        if named is None:
            return None
        inputs, y = named
        got = replay(engine.model, inputs)
        diff = float(np.max(np.abs(got - y))) if got.shape == y.shape else float("inf")
        return EvalResult(artifact=str(path), data=f"{path}:{manifest.validation}", samples=len(y), accuracy=None,
                          error_rate=None, correct=None, runtime=p.runtime, batch_size=1,
                          reference="the outputs recorded at build time", output_kind=engine.kind.value,
                          max_abs_diff=diff)


def _named_labels(path: Path) -> np.ndarray | None:
    with np.load(path, allow_pickle=False) as z:
        return np.asarray(z["y"]).astype(np.int64) if "y" in z.files else None


# --- accuracy in percent for the converter's pipeline (models as files or bytes) -------

BATCH = 64


def top1(outputs: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy in percent."""
    pred = outputs.reshape(len(outputs), -1).argmax(axis=1)
    return round(float((pred == labels).mean() * 100.0), 4)


def predict_file(path: Path, x: np.ndarray) -> np.ndarray:
    """Float outputs of a ``.tflite``/``.onnx`` file, through ``device_agent.runtimes``."""
    model = load_model(path)
    parts = [model.predict1(x[i : i + BATCH]) for i in range(0, len(x), BATCH)]
    return np.concatenate(parts, axis=0)


def artifact_accuracy(data: bytes, fmt: ModelFormat, x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of a model given as bytes (written to a temporary file to be loaded)."""
    with tempfile.TemporaryDirectory(prefix="edge-eval-") as tmp:
        path = Path(tmp) / f"model.{fmt.value}"
        path.write_bytes(data)
        return top1(predict_file(path, x), y)


def keras_accuracy(model: Model, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy (percent) of an in-memory Keras model; several outputs: the last one is scored."""
    out = model.predict(x, batch_size=256, verbose=0)
    if isinstance(out, (list, tuple)):
        out = out[-1]
    return top1(np.asarray(out), y)


__all__ = [
    "EvalConfig",
    "EvalResult",
    "Predictor",
    "accuracy",
    "agreement",
    "artifact_accuracy",
    "evaluate",
    "keras_accuracy",
    "open_predictor",
    "predict_all",
    "predict_file",
    "predicted_classes",
]
