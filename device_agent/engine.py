"""The inference engine: a verified bundle's model(s) behind one ``infer`` call.

The engine turns raw readings into :class:`Prediction` rows: preprocessing from the
manifest, the input cache, the early-exit cascade and the runtime all sit here, so the
serve loop (``device_agent.serve``) never touches a runtime and model swaps replace
one object.

**The cascade convention.** A bundle with early exits holds one model file per stage
(``ModelFile.stage`` = 0, 1, ...). Stage 0 takes the bundle's input; stage ``k > 0``
takes stage ``k-1``'s *features*. Every stage but the last outputs two tensors,
``[features, logits]``; the last outputs ``[logits]`` (probabilities are accepted too).
Converters may reorder outputs, so the engine tells them apart by shape: *features*
is the output whose shape equals the next stage's input, *logits* is the rank-2
output with as many classes as the last stage (when both fit, declared order wins).
The manifest's ``exits`` name stages 0..n-2 with a threshold and a criterion (see
``device_agent.exit_policy``); the engine runs stage by stage and stops a row at the
first confident exit. A cascade that does not fit this convention is refused on load.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from device_agent.cache import CacheConfig, CacheMode, LRUCache, float32_key, input_key
from device_agent.errors import BundleError, EdgeError, InputError
from device_agent.exit_policy import (
    Criterion,
    ExitRule,
    override,
    rules_from_manifest,
    scores,
    softmax,
)
from device_agent.feeds import Described, Feeder, Value
from device_agent.outputs import decode
from device_agent.protocol.manifest import Manifest, ModelFormat, OutputKind, TensorSpec
from device_agent.quant import RowQuantizer, dequantize, quantize_finite
from device_agent.runtimes import RuntimeOptions, choose_format, load_model
from device_agent.runtimes.base import feeder
from device_agent.runtimes.model import Model
from device_agent.state import StateStore

if TYPE_CHECKING:
    from device_agent.preprocess import Pipeline

log = logging.getLogger(__name__)



@dataclass(slots=True)
class Prediction:
    """One input's answer: class index, its label, confidence and the exit stage used.

    ``output`` is the deciding stage's output row: float logits or probabilities, or,
    on the one-reading path of a quantized model, the raw integer row (dequantize with
    the stage's output spec; the answer never needs it dequantized). Not frozen, like
    :class:`~device_agent.sinks.base.Result`: one is built per reading and a frozen
    dataclass's ``__init__`` costs twice as much; treat it as read-only.
    """

    index: int
    label: str
    confidence: float
    stage: int = 0
    cached: bool = False
    output: np.ndarray | None = None
    # A non-classifier's answer (raw tensors, values, detections): index is -1 then.
    outputs: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)

class EngineOptions:
    """Run-time choices: the input cache and threshold overrides (``None`` key = every exit)."""

    cache: CacheConfig = field(default_factory=CacheConfig)
    thresholds: Mapping[int | None, float] = field(default_factory=dict)


# The plain-float top-1 probability of the one-reading path is within ~1e-6 of the
# float32 score (:func:`device_agent.exit_policy.scores`); this close to a threshold the
# float32 score decides, so one reading exits exactly when it would in a batch.
_NEAR = 1e-4


def as_probabilities(out: np.ndarray) -> np.ndarray:
    """Outputs that already sum to 1 are probabilities; anything else is treated as logits."""
    if looks_like_probabilities(out):
        return out
    return softmax(out.astype(np.float32))


def looks_like_probabilities(out: np.ndarray) -> bool:
    """Whether ``out`` rows already sum to 1 in [0, 1] (a softmax output)."""
    # min/abs-max rather than np.all/np.allclose: the same test, and allclose alone cost
    # ~30 µs per call, more than a small int8 model's whole invoke.
    return bool(out.ndim == 2 and out.size and out.min() >= 0 and np.abs(out.sum(axis=1) - 1.0).max() <= 1e-2)


class Stage:
    """One model of the cascade, with the positions of its feature and logit outputs."""

    def __init__(self, model: Model, *, logits: int, features: int | None):
        self.model = model
        self.logits = logits
        self.features = features
        self.in_spec: TensorSpec = model.inputs[0]
        self.out_specs = model.outputs
        self.probabilities: bool | None = None  # decided on the first output, then fixed
        self.invoke = model.runtime.run
        self.feed, self.fetch = feeder(model.runtime)
        self.logits_quantized = self.out_specs[logits].quantized
        self.to_input = RowQuantizer(self.in_spec) if self.in_spec.quantized else _float_input(self.in_spec)
        # float32 rows are fed as they are: feed() takes any layout (the interpreter
        # copies the input anyway), so the one-reading path skips to_input.
        self.float_in = self.in_spec.dtype == "float32"
        lspec = self.out_specs[logits]
        # Few classes (known from the spec): top-1 in plain floats, not numpy.
        self._few = 0 < lspec.shape[-1] <= 64 and all(d == 1 or d < 0 for d in lspec.shape[:-1])
        self._lscale = float(lspec.scale or 0.0)
        self._lzero = int(lspec.zero_point or 0)
        self._row0 = len(lspec.shape) == 2  # a (1, classes) output: tolist()[0] is the row
        # exp(v * scale) for every integer logit: the softmax of a quantized row becomes
        # table lookups summed in C (no Python frame per class).
        self._qexp = _exp_table(lspec) if self._few and self.logits_quantized else None
        # Set by build_stages: the next stage takes this stage's integer features as they
        # are (same quantization), so they are neither dequantized nor quantized again.
        self.hands_off_raw = False

    def hand_off(self, raw_features: np.ndarray) -> tuple[np.ndarray, bool]:
        """Features for the next stage, and whether they are already in its input dtype."""
        if self.hands_off_raw:
            return raw_features, True
        return self.features_float(raw_features), False

    def top(self, q: np.ndarray, rule: ExitRule | None) -> tuple[int, float, float, np.ndarray]:
        """One row's logits output ``q`` → (winner, its probability, exit score, output row).

        For quantized logits the winner and its softmax probability come from the raw
        integers: argmax is unchanged by ``(q - zp) * scale`` with ``scale > 0``, and
        the softmax needs only ``scale * (q - q_max)``, so nothing is dequantized.
        """
        if self.probabilities is None:  # the first answer decides logits or probabilities
            z = dequantize(q, self.out_specs[self.logits]) if self.logits_quantized else q
            self.probabilities = looks_like_probabilities(z.reshape(1, -1))
        if not self._few or (rule is not None and rule.criterion is not Criterion.MAX_PROB):
            z = dequantize(q, self.out_specs[self.logits]).reshape(-1)
            return (*_top(z, self.probabilities, rule), z)
        i, conf = self._fast_top(q)
        score = conf
        if rule is not None and abs(conf - rule.threshold) < _NEAR:
            score = self.exact_score(q, rule)
        return i, conf, score, q.ravel()

    def exact_score(self, q: np.ndarray, rule: ExitRule) -> float:
        """One row's exit score as a batch computes it (float32, :func:`scores`)."""
        z = dequantize(q, self.out_specs[self.logits]).reshape(1, -1)
        return float(scores(z, rule.criterion, probabilities=bool(self.probabilities))[0])

    def _fast_top(self, q: np.ndarray) -> tuple[int, float]:
        """Winner and its softmax probability in plain floats (few classes, top-1)."""
        ql = q.tolist()[0] if self._row0 else q.ravel().tolist()
        top = max(ql)
        i = ql.index(top)
        if not self.logits_quantized:
            conf = top if self.probabilities else _max_softmax(ql, top)
        elif self.probabilities:
            conf = (top - self._lzero) * self._lscale
        elif self._qexp is not None:  # the same, from the exp table: a C loop too
            e = self._qexp
            conf = e[top] / sum(map(e.__getitem__, ql))
        else:
            s = self._lscale
            conf = 1.0 / sum([_exp((v - top) * s) for v in ql])
        return i, conf

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Float batch → (class probabilities, float features or None)."""
        probs, raw = self.run_raw(x)
        return probs, (None if raw is None else self.features_float(raw))

    def run_raw(self, x: np.ndarray, ready: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Like :meth:`run`, but features stay in the model's dtype (dequantize only rows
        that go on: most rows of a good cascade exit here). ``ready``: ``x`` is already
        in the model's input dtype."""
        raw = self.invoke([x if ready else self.to_input(x)])
        return self.probabilities_of(self.logits_of(raw[self.logits], len(x))), (
            None if self.features is None else raw[self.features]
        )

    def logits_of(self, raw: np.ndarray, n: int) -> np.ndarray:
        """The first ``n`` rows of a raw output as float logits."""
        return dequantize(raw, self.out_specs[self.logits]).reshape(n, -1)

    def probabilities_of(self, logits: np.ndarray) -> np.ndarray:
        """Logits → probabilities (unless the stage outputs them already)."""
        if self.probabilities is None:
            self.probabilities = looks_like_probabilities(logits)
        return logits if self.probabilities else softmax(logits.astype(np.float32, copy=False))

    def features_float(self, raw: np.ndarray) -> np.ndarray:
        """The stage's feature output as float32 (for the next stage's head)."""
        assert self.features is not None
        return dequantize(raw, self.out_specs[self.features])


def to_model_dtype(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Float batch → the model's input dtype. Finite values are checked before this."""
    if spec.quantized:
        return quantize_finite(x, spec)
    if x.dtype == _F32 and spec.dtype == "float32" and x.flags.c_contiguous:
        return x  # the usual case: nothing to convert
    return np.ascontiguousarray(x, dtype=spec.dtype)


_F32 = np.dtype(np.float32)
_ONES: dict[int, np.ndarray] = {}


def _all_finite(x: np.ndarray) -> bool:
    """Whether every value of float array ``x`` is finite.

    One sum is far cheaper than ``isfinite`` over every element; only when the sum is
    not finite (NaN/inf present, or a float32 overflow) is the full check run. The sum
    is BLAS's dot with ones: ~0.8 µs cheaper than ``x.sum()`` on a 28×28 image, and
    silent on overflow (``x·x`` would overflow, and fall back, for far smaller values).
    """
    ones = _ONES.get(x.size)
    if ones is None:
        ones = _ones(x.size)
    return _isfinite(np.vdot(x, ones)) or bool(np.isfinite(x).all())


def _ones(size: int) -> np.ndarray:
    """A float32 vector of ones to sum inputs of ``size`` with (kept for a few sizes)."""
    ones = np.ones(size, dtype=np.float32)
    if len(_ONES) < 16:
        _ONES[size] = ones
    return ones


def _float_input(spec: TensorSpec) -> Callable[[np.ndarray], np.ndarray]:
    if spec.dtype == "float32":
        return _float32_rows
    return lambda x: to_model_dtype(x, spec)


def _float32_rows(x: np.ndarray) -> np.ndarray:
    if x.dtype == _F32 and x.flags.c_contiguous:
        return x  # the usual case: nothing to convert
    return np.ascontiguousarray(x, dtype=np.float32)


class _NoPreprocessing:
    """The identity, falsy: what a bundle without preprocessing steps gets."""

    def __bool__(self) -> bool:
        return False

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x

    def batch(self, xs: np.ndarray) -> np.ndarray:
        """Every sample unchanged."""
        return xs


def preprocessing(steps: Sequence[Mapping[str, Any]]) -> Pipeline | _NoPreprocessing:
    """The manifest's steps as one callable; the step machinery (a dozen dataclasses,
    ~10 ms of a cold start) is imported only by a bundle that has steps."""
    if not steps:
        return _NoPreprocessing()
    from device_agent.preprocess import Pipeline

    return Pipeline.parse(steps)


class Engine:
    """Runs a bundle's cascade (one stage for a plain model) with preprocessing and cache."""

    def __init__(
        self,
        model: Model | Sequence[Model],
        *,
        labels: tuple[str, ...] = (),
        manifest: Manifest | None = None,
        options: EngineOptions | None = None,
    ):
        models = [model] if isinstance(model, Model) else list(model)
        self.model = models[0]
        self.labels = labels
        self.manifest = manifest
        self.options = options or EngineOptions()
        self.kind = manifest.output_kind if manifest else OutputKind.CLASSIFIER
        self.feeder = Feeder(self.model.inputs, manifest.constants if manifest else (),
                             manifest.state if manifest else ())
        # Carried state (a recurrent model): kept per source stream across readings.
        self.state = StateStore(manifest.state, self.model.inputs) if manifest and manifest.state else None
        # Several inputs, constants or a non-classifier: the named-tensor path
        # (:meth:`_general`); the classifier fast paths below never see such a model.
        self.general = self.state is not None or self.kind != OutputKind.CLASSIFIER or not _one_plain_input(
            self.model, self.feeder)
        if self.general and len(models) > 1:
            raise BundleError("early-exit stages need a single-input classifier")
        self.stages = [] if self.general else build_stages(models)
        self.pipeline = preprocessing(manifest.preprocessing if manifest else ())
        base = rules_from_manifest(manifest.exits, len(models)) if manifest else {}
        self.rules = override(base, self.options.thresholds, len(models))
        cfg = self.options.cache
        self.cache = LRUCache(cfg.max_bytes) if cfg.mode != CacheMode.OFF else None
        self._tol = cfg.tolerance if cfg.mode == CacheMode.NEAR else 0.0
        self._plans: dict[tuple[int, ...], tuple[int, ...] | str] = {}
        self._row_plans: dict[tuple[int, ...], tuple[int, ...]] = {}
        # Label of every class index, so the per-reading path builds no string.
        out0 = self.stages[-1].out_specs[self.stages[-1].logits] if self.stages else self.model.outputs[0]
        classes = max(out0.shape[-1] if out0.shape else 1, len(labels))
        self._names = tuple(labels[i] if i < len(labels) else str(i) for i in range(classes))
        self._sample = tuple(self.model.inputs[0].shape[1:])
        self._plain = len(self.stages) <= 1

    @classmethod
    def from_bundle_dir(
        cls,
        root: Path,
        manifest: Manifest,
        *,
        runtime: str | None = None,
        options: RuntimeOptions | None = None,
        prefer: ModelFormat | None = None,
        engine_options: EngineOptions | None = None,
    ) -> Engine:
        """An engine for an unpacked bundle: its stages, labels, preprocessing and exits."""
        fmt = choose_format(manifest.targets, prefer=prefer, runtime=runtime)
        files = manifest.stage_files(fmt)
        stages = [f.stage for f in files]
        if stages != list(range(len(files))):
            raise BundleError(
                f"manifest.json: {fmt.value} stages are {stages}; expected 0..{len(files) - 1}"
            )
        models = [load_model(root / f.unpacked_path, runtime=runtime, options=options) for f in files]
        return cls(models, labels=manifest.labels, manifest=manifest, options=engine_options)

    @property
    def rules(self) -> dict[int, ExitRule]:
        """The exit rule of each stage that has one (stage index → rule)."""
        return self._rules

    @rules.setter
    def rules(self, rules: dict[int, ExitRule]) -> None:
        """Set the rules and precompute each stage's rule (none for the last stage: it always answers)."""
        self._rules = rules
        last = len(self.stages) - 1  # the last stage always answers: no rule
        self._stage_rules = [rules.get(k) if k < last else None for k in range(max(1, last + 1))]

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The model's input shape without the batch axis."""
        return self.model.inputs[0].shape

    @property
    def batchable(self) -> bool:
        """Whether every stage accepts more than one row per call."""
        if self.general:  # one reading per call on the named-tensor path
            return False
        return all(len(s.in_spec.shape) > 0 and s.in_spec.shape[0] != 1 for s in self.stages)

    def set_thresholds(self, thresholds: Mapping[int | None, float]) -> None:
        """Change exit thresholds while serving; cached answers are dropped, tensors kept."""
        self.rules = override(self.rules, thresholds, len(self.stages))
        if self.cache is not None and not self._plain:  # a model without exits: same answers
            self.cache.drop_results()

    # -- serving ---------------------------------------------------------------------

    def check_source(self, described: Described | None, *, what: str) -> None:
        """Refuse a source whose readings cannot feed this model (``EdgeError``, one line);
        ``None``: the source cannot know before its first reading."""
        if described is not None:
            self.feeder.check(described, what=what)
        elif len(self.feeder.fed) != 1:
            raise EdgeError(
                f"{what} gives one array per reading; the model takes {len(self.feeder.fed)} inputs "
                f"{[s.name for s in self.feeder.fed]}: serve it from a file:INPUTS.npz with one array "
                "per input name, or an MQTT source whose JSON payloads name each input"
            )

    def infer_one(self, value: Value, finite: bool = False, stream: str = "") -> Prediction:
        """One raw reading → its prediction. Bad input raises :class:`InputError`.

        ``finite``: the caller has checked that every value is finite (see
        :attr:`Reading.finite <device_agent.sources.base.Reading>`); the check is skipped.
        ``stream``: which source stream the reading belongs to (carried state is per stream).
        """
        if self.general:
            return self._general(value, stream)
        if self.cache is not None:
            return self._infer_cached(value, self.cache, finite)
        # The per-reading path, kept flat: in the serve loop the CPU caches are cold
        # after every invoke, and each Python call level costs ~0.5 µs there.
        try:
            x = np.asarray(value, dtype=_F32)
        except (TypeError, ValueError) as e:
            raise InputError(f"input is not numeric ({e})") from None
        if not finite:
            ones = _ONES.get(x.size)
            if ones is None or not _isfinite(np.vdot(x, ones)):
                self._check_finite(x)  # the full check, only when the sum is not finite
        plan = self._row_plans.get(x.shape)
        if plan is None:
            return self._answer(self._prepare(x))
        # Stage 0 (the whole model, or a cascade's first exit: where most readings stop).
        st, rule = self.stages[0], self._stage_rules[0]
        q = st.feed(x.reshape(plan) if st.float_in else st.to_input(x.reshape(plan)), st.logits)
        i, conf, score, z = st.top(q, rule)
        if self._plain or (rule is not None and score > rule.threshold):
            names = self._names
            return Prediction(i, names[i] if i < len(names) else str(i), conf, 0, False, z)
        return self._after(0, st.fetch(st.features))  # type: ignore[arg-type]

    def _infer_cached(self, value: Value, cache: LRUCache, finite: bool) -> Prediction:
        if self._tol:  # near keys round the values: NaN must be refused before keying
            x = self._float(value) if finite else self._finite(value)
            key = input_key(x, tolerance=self._tol)
        else:  # an exact hit is byte-identical to an input that was checked on its miss
            try:
                x = np.asarray(value, dtype=_F32)
            except (TypeError, ValueError) as e:
                raise InputError(f"input is not numeric ({e})") from None
            key = float32_key(x)
        hit = cache.get(key)
        if hit is not None and hit.result is not None:
            return hit.result  # type: ignore[no-any-return]
        if hit is not None and hit.tensor is not None:
            rows = hit.tensor  # preprocessed before; the answers changed (new thresholds)
        else:
            if not finite and not self._tol:
                self._check_finite(x)
            plan = self._row_plans.get(x.shape)
            rows = x.reshape(plan) if plan is not None else self._prepare(x)
        pred = self._single(rows) if len(rows) == 1 else self._answer(rows)
        # The tensor is kept to answer again when thresholds change; a model without
        # exits never changes its answers, so its entries hold only the result (no copy
        # of the input per miss, and more entries fit under the byte cap).
        cache.put(key, None if self._plain else rows, _cached(pred))
        return pred

    def infer_many(self, values: Sequence[Value]) -> list[Prediction | InputError]:
        """A micro-batch: readings are checked one by one, the good ones run together."""
        if self.general:
            return [self._general_or_error(v) for v in values]
        if self.cache is None and not self.pipeline:
            fast = self._many_same_shape(values)
            if fast is not None:
                return fast
        out: list[Prediction | InputError] = [InputError("not run")] * len(values)
        todo: list[tuple[int, np.ndarray, bytes | None]] = []
        for i, v in enumerate(values):
            try:
                x = self._finite(v)
                key = None
                if self.cache is not None:
                    key = input_key(x, tolerance=self._tol)
                    hit = self.cache.get(key)
                    if hit is not None and hit.result is not None:
                        out[i] = hit.result
                        continue
                todo.append((i, self._prepare(x), key))
            except InputError as e:
                out[i] = e
        if todo:
            self._answer_batch(todo, out)
        return out

    def _many_same_shape(self, values: Sequence[Value]) -> list[Prediction | InputError] | None:
        """Readings of one known shape, all finite, checked and run as one array; ``None``
        sends the batch the per-reading way (which says which reading is bad)."""
        try:
            x = np.asarray(values, dtype=np.float32)
        except (TypeError, ValueError):  # ragged or not numeric
            return None
        plan = self._row_plans.get(x.shape[1:])
        if plan is None or not math.isfinite(x.sum()):
            return None
        rows = x.reshape(len(values), *plan[1:])
        probs, stage = self.cascade(rows)
        out: list[Prediction | InputError] = [InputError("not run")] * len(values)
        self._answer_rows([(i, rows[i : i + 1], None) for i in range(len(values))], probs, stage, out)
        return out

    def infer(self, batch: np.ndarray) -> list[Prediction]:
        """Run a float batch already in the model's input shape; one prediction per row."""
        if self.general:
            return [self._general(row) for row in batch]
        x = np.asarray(batch, dtype=np.float32)
        probs, stage = self.cascade(x)
        return [self._prediction(p, int(s)) for p, s in zip(probs, stage, strict=True)]

    def cascade(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows of ``x`` through the stages → (probabilities, exit stage) per row."""
        n, last = len(x), len(self.stages) - 1
        probs, feats = self.stages[0].run_raw(x)
        if last == 0:
            return probs, np.zeros(n, dtype=np.int64)
        out = np.empty_like(probs)
        stage = np.full(n, last, dtype=np.int64)
        idx = np.arange(n)
        for k in range(last + 1):
            if k > 0:
                probs, feats = self.stages[k].run_raw(*self.stages[k - 1].hand_off(feats))  # type: ignore[arg-type]
            rule = self.rules.get(k) if k < last else None
            done = rule.exits(probs) if rule is not None else np.full(len(idx), k == last)
            out[idx[done]] = probs[done]
            stage[idx[done]] = k
            if done.all():
                break
            if done.any():
                idx, feats = idx[~done], feats[~done]  # type: ignore[index]
        return out, stage

    # -- internals -------------------------------------------------------------------

    def _general(self, value: Value, stream: str = "") -> Prediction:
        """Named tensors in, the output kind's answer out (one reading, one call)."""
        if self.pipeline and not isinstance(value, Mapping):
            try:
                value = self.pipeline(np.asarray(value, dtype=_F32))
            except (ValueError, IndexError) as e:
                raise InputError(f"preprocessing failed: {e}") from None
        carried = self.state.current(stream) if self.state is not None else None
        raw = self.model.run_raw(*self.feeder.tensors(value, carried))
        if self.state is not None:
            self.state.update(stream, {s.name: r for s, r in zip(self.model.outputs, raw, strict=True)})
        outs = [dequantize(r, s) for r, s in zip(raw, self.model.outputs, strict=True)]
        if self.kind == OutputKind.CLASSIFIER:
            p = as_probabilities(np.asarray(outs[0], dtype=np.float32).reshape(1, -1))[0]
            return self._prediction(p, 0)
        answer = decode(self.kind, outs, self.model.outputs,
                        self.manifest.detection if self.manifest else None)
        return Prediction(-1, "", float("nan"), 0, False, None, answer)

    def _general_or_error(self, value: Value) -> Prediction | InputError:
        try:
            return self._general(value)
        except InputError as e:
            return e

    def _finite(self, value: Value) -> np.ndarray:
        x = self._float(value)
        self._check_finite(x)
        return x

    @staticmethod
    def _float(value: Value) -> np.ndarray:
        try:
            return np.asarray(value, dtype=_F32)
        except (TypeError, ValueError) as e:
            raise InputError(f"input is not numeric ({e})") from None

    @staticmethod
    def _check_finite(x: np.ndarray) -> None:
        if not _all_finite(x):
            raise InputError(f"input of shape {x.shape} contains NaN or infinite values")

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        """Preprocess one reading and shape it as model rows (rows, *sample)."""
        if self.pipeline:
            try:
                x = self.pipeline(x)
            except (ValueError, IndexError) as e:
                raise InputError(f"preprocessing failed on input of shape {x.shape}: {e}") from None
        plan = self._plans.get(x.shape)
        if plan is None:
            plan = self._plans[x.shape] = self._plan(x.shape)
            if not self.pipeline and isinstance(plan, tuple) and plan[0] == 1:
                self._row_plans[x.shape] = plan  # one row: infer_one's direct path
        if isinstance(plan, str):
            raise InputError(plan)
        return x.reshape(plan)

    def _plan(self, shape: tuple[int, ...]) -> tuple[int, ...] | str:
        """Target shape for readings of ``shape`` (cached), or why they cannot fit."""
        want = self._sample
        if any(d <= 0 for d in want):  # dynamic sizes: only the rank can be checked
            if len(shape) == len(want):
                return (1, *shape)
            if len(shape) == len(want) + 1:
                return shape
            return f"input of shape {shape} does not fit the model input of shape {want}"
        if shape == want:
            return (1, *want)
        if len(shape) == len(want) + 1 and shape[1:] == want:
            return shape  # a stack of windows from preprocessing
        size, need = int(np.prod(shape)), int(np.prod(want))
        if size == need:
            return (1, *want)  # e.g. a flat CSV row for an image model
        return (
            f"input of shape {shape} ({size} values) does not fit the model input "
            f"{self.stages[0].in_spec.name} of shape {want} ({need} values per sample)"
        )

    def _answer(self, rows: np.ndarray) -> Prediction:
        if len(rows) == 1:
            return self._single(rows)
        probs, stage = self.cascade(rows)
        if len(rows) == 1:
            return self._prediction(probs[0], int(stage[0]))
        return self._prediction(probs.mean(axis=0), int(stage.max()))

    def _answer_batch(
        self, todo: list[tuple[int, np.ndarray, bytes | None]], out: list[Prediction | InputError]
    ) -> None:
        rows = np.concatenate([r for _, r, _ in todo])
        probs, stage = self.cascade(rows)
        if len(rows) == len(todo):  # one row per reading: the winners in one call
            self._answer_rows(todo, probs, stage, out)
            return
        start = 0
        for i, r, key in todo:
            p, s = probs[start : start + len(r)], stage[start : start + len(r)]
            start += len(r)
            pred = self._prediction(p.mean(axis=0) if len(r) > 1 else p[0], int(s.max()))
            out[i] = pred
            if self.cache is not None and key is not None:
                self.cache.put(key, r, _cached(pred))

    def _answer_rows(
        self,
        todo: list[tuple[int, np.ndarray, bytes | None]],
        probs: np.ndarray,
        stage: np.ndarray,
        out: list[Prediction | InputError],
    ) -> None:
        win = probs.argmax(axis=1)
        conf = probs[np.arange(len(win)), win].tolist()
        for (i, r, key), k, c, s, p in zip(todo, win.tolist(), conf, stage.tolist(), probs, strict=True):
            pred = Prediction(index=k, label=self._label(k), confidence=c, stage=s, output=p)
            out[i] = pred
            if self.cache is not None and key is not None:
                self.cache.put(key, r, _cached(pred))

    def _single(self, row: np.ndarray) -> Prediction:
        # One row through the cascade. It avoids numpy calls on tiny arrays (~1 µs each):
        # for a few classes plain floats are faster. (infer_one runs stage 0 inline.)
        st, rule = self.stages[0], self._stage_rules[0]
        q = st.feed(row if st.float_in else st.to_input(row), st.logits)
        i, conf, score, z = st.top(q, rule)
        if self._plain or (rule is not None and score > rule.threshold):
            return Prediction(i, self._label(i), conf, 0, False, z)
        return self._after(0, st.fetch(st.features))  # type: ignore[arg-type]

    def _after(self, k: int, raw_features: np.ndarray) -> Prediction:
        """Stages after ``k`` for one row that did not exit at ``k``. Features are
        fetched only for rows that go on, and dequantized only when the next stage
        needs it."""
        row, ready = self.stages[k].hand_off(raw_features)
        last = len(self.stages) - 1
        for j in range(k + 1, last + 1):
            st, rule = self.stages[j], self._stage_rules[j]
            q = st.feed(row if ready or st.float_in else st.to_input(row), st.logits)
            i, conf, score, z = st.top(q, rule)
            if j == last or (rule is not None and score > rule.threshold):
                return Prediction(i, self._label(i), conf, j, False, z)
            row, ready = st.hand_off(st.fetch(st.features))  # type: ignore[arg-type]
        raise AssertionError("the last stage always answers")

    def _label(self, i: int) -> str:
        names = self._names
        return names[i] if i < len(names) else str(i)

    def _prediction(self, p: np.ndarray, stage: int) -> Prediction:
        i = int(p.argmax())
        label = self._label(i)
        return Prediction(index=i, label=label, confidence=float(p[i]), stage=stage, output=p)


def _one_plain_input(model: Model, feeder: Feeder) -> bool:
    """One input of rank ≥ 1, fed by the reading: what the classifier fast paths take."""
    return len(model.inputs) == 1 and len(feeder.fed) == 1 and bool(model.inputs[0].shape)


def _cached(p: Prediction) -> Prediction:
    # The copy a cache hit returns; ``dataclasses.replace`` costs ~1 µs more per miss.
    return Prediction(p.index, p.label, p.confidence, p.stage, True, p.output)


def _top(z: np.ndarray, is_prob: bool, rule: ExitRule | None) -> tuple[int, float, float]:
    """(winner, its probability, exit score) of one output row, in plain floats."""
    if z.size > 64 or (rule is not None and rule.criterion is not Criterion.MAX_PROB):
        p = z if is_prob else softmax(z.astype(np.float32, copy=False))
        i = int(p.argmax())
        score = float(p[i]) if rule is None else float(scores(z[None], rule.criterion, probabilities=is_prob)[0])
        return i, float(p[i]), score
    zl = z.tolist()
    top = max(zl)
    i = zl.index(top)
    conf = top if is_prob else _max_softmax(zl, top)
    return i, conf, conf


_exp = math.exp
_isfinite = math.isfinite
# |logit| below this: exp() of every logit and their sum stay finite and normal in
# double precision (10 classes × e^500 ≈ 1e218), so exp(top)/sum(exp(v)) is exact enough.
_EXP_SAFE = 500.0


def _exp_table(spec: TensorSpec) -> dict[int, float] | None:
    """``{q: exp(q * scale)}`` over the integer range of a quantized output, or ``None``
    when some entry would leave the safe range (then the shifted softmax is used)."""
    lo, hi = (-128, 127) if spec.dtype == "int8" else (0, 255)
    scale = float(spec.scale or 0.0)
    if scale <= 0 or max(abs(lo), abs(hi)) * scale >= _EXP_SAFE:
        return None
    return {q: math.exp(q * scale) for q in range(lo, hi + 1)}


def _max_softmax(z: list[float], top: float) -> float:
    """softmax(z)[argmax] of plain floats: ``exp(top) / sum(exp(v))``, summed by ``map``
    in C (a Python loop shifting each logit first ran per class); beyond the safe range,
    shifted by the top logit."""
    if -_EXP_SAFE < top < _EXP_SAFE:
        return _exp(top) / sum(map(_exp, z))
    return 1.0 / sum([_exp(v - top) for v in z])


def build_stages(models: Sequence[Model]) -> list[Stage]:
    """Pair each model's outputs with the cascade roles; refuse cascades that do not fit."""
    if len(models) == 1:
        return [Stage(models[0], logits=0, features=None)]
    last = models[-1]
    if len(last.outputs) != 1:
        raise BundleError(
            f"cascade: the last stage {last.path.name} must have one output (logits), "
            f"it has {len(last.outputs)}"
        )
    classes = last.outputs[0].shape[-1]
    stages = []
    for k, m in enumerate(models[:-1]):
        nxt = tuple(models[k + 1].inputs[0].shape[1:])
        stages.append(_pair_outputs(m, k, nxt, classes))
    stages.append(Stage(last, logits=0, features=None))
    for st, nxt_stage in pairwise(stages):
        st.hands_off_raw = same_quantization(st.out_specs[st.features], nxt_stage.in_spec)  # type: ignore[index]
    return stages


def same_quantization(out: TensorSpec, nxt: TensorSpec) -> bool:
    """Whether integer features ``out`` can feed input ``nxt`` unchanged.

    Dequantizing with ``out``'s scale and quantizing with ``nxt``'s gives back the same
    integers when the dtypes and zero points match and the scales agree to well within
    1/256 relative (converters store the same float32 scale, sometimes one ulp apart):
    ``|q - zp| <= 255``, so the requantized value stays within 0.01 of ``q``.
    """
    if not (out.quantized and nxt.quantized) or out.dtype != nxt.dtype:
        return False
    if out.zero_point != nxt.zero_point or not out.scale or not nxt.scale:
        return False
    return abs(out.scale / nxt.scale - 1.0) < 1e-5


def _pair_outputs(m: Model, k: int, next_input: tuple[int, ...], classes: int) -> Stage:
    outs = m.outputs
    shapes = [tuple(o.shape[1:]) for o in outs]
    if len(outs) != 2:
        raise BundleError(
            f"cascade: stage {k} ({m.path.name}) must output [features, logits]; "
            f"it has {len(outs)} output(s) {shapes}"
        )
    for feat, logit in ((0, 1), (1, 0)):
        if _fits(shapes[feat], next_input) and shapes[logit] == (classes,):
            return Stage(m, logits=logit, features=feat)
    raise BundleError(
        f"cascade: stage {k} ({m.path.name}) outputs {shapes}, but stage {k + 1} expects "
        f"features of shape {next_input} and the model has {classes} classes"
    )


def _fits(got: tuple[int, ...], want: tuple[int, ...]) -> bool:
    return len(got) == len(want) and all(
        w <= 0 or g <= 0 or g == w for g, w in zip(got, want, strict=True)
    )
