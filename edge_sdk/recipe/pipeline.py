"""The recipe: graph passes in a fixed order, then export (and int8) per target, then the
bundle and its report.

Order of a run:
  1. load the model and the data; hold out the final split (``--eval-data``, else a
     stratified, seeded part of ``--data`` carved out first: ``edge_sdk.measure.holdout``), and
     split the rest into calibration and selection ("validation") halves: every choice
     (search, int8 remedy, exit thresholds) is made on the selection split;
  2. baseline: accuracy, parameters, MACs, bytes of the input model;
  3. every graph pass of ``Recipe.passes`` in order (float → float), measured after each;
  4. per target: export float, then (``int8``) quantize with the remedy search;
  5. time baseline and optimized files through the device runtimes;
  6. (``early_exit``) the cascade export: exit heads on the final float model, stages
     exported per target like the full model, thresholds calibrated on the shipped
     stages (``edge_sdk.recipe.cascade_export``; not a graph pass: it yields several models
     and must calibrate after conversion); the bundle then holds the stages;
  7. final figures on the held-out split (the before/after table and paired drops);
  8. write the bundle and the report files, all or nothing.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from device_agent.errors import EdgeError
from device_agent.protocol.manifest import Compression, ModelFormat, OutputKind, parse_semver
from device_agent.runtimes import load_model
from edge_sdk.measure.evaluate import artifact_accuracy, keras_accuracy
from edge_sdk.measure.step_metrics import StepSize, codec, model_size
from edge_sdk.measure.timing import measure_artifact
from edge_sdk.model import analysis
from edge_sdk.model.data import Dataset, fit_to_shape, load_dataset
from edge_sdk.model.kind import Model, ModelKind
from edge_sdk.model.load import SourceKind, SourceModel, load_source
from edge_sdk.model.preprocess import range_mismatch, value_range
from edge_sdk.passes.base import GraphPass, PassContext, Progress, no_progress
from edge_sdk.passes.early_exit.keras import EarlyExitConfig, check_exit_layers
from edge_sdk.passes.quantize.base import Decision, Exporter, QuantizeConfig, converting, search
from edge_sdk.passes.quantize.onnx import OnnxExporter
from edge_sdk.passes.quantize.tflite import TFLiteExporter
from edge_sdk.recipe import budget
from edge_sdk.recipe.pick import Picked, candidate, model_sha256
from edge_sdk.recipe.result import Comparison, ModelMetrics, Report, StepRecord, TargetResult, run_spread
from edge_sdk.recipe.search import SearchConfig
from edge_sdk.recipe.shipped_search import ShippedConfig

if TYPE_CHECKING:
    from edge_sdk.recipe.budget import Overrun

if TYPE_CHECKING:
    from edge_sdk.measure.holdout import HeldOut
    from edge_sdk.recipe.result import CascadeResult


class Target(str, Enum):
    """Which model formats go into the bundle."""

    TFLITE = "tflite"
    ONNX = "onnx"
    BOTH = "both"

    @property
    def formats(self) -> tuple[ModelFormat, ...]:
        """The model formats this target ships, in bundle order."""
        return {
            Target.TFLITE: (ModelFormat.TFLITE,),
            Target.ONNX: (ModelFormat.ONNX,),
            Target.BOTH: (ModelFormat.TFLITE, ModelFormat.ONNX),
        }[self]


EXPORTERS: dict[ModelFormat, Callable[[], Exporter]] = {
    ModelFormat.TFLITE: TFLiteExporter,
    ModelFormat.ONNX: OnnxExporter,
}


def default_passes() -> tuple[GraphPass, ...]:
    """The graph passes, in the order they run. Adding a pass is one line here, e.g.
    ``PrunePass(PruneConfig())``; each sees the previous one's float model."""
    return ()


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """What ``edge optimize`` does, as one typed value (recorded in the manifest)."""

    passes: tuple[GraphPass, ...] = field(default_factory=default_passes)
    target: Target = Target.TFLITE
    int8: bool = True
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)
    max_drop: float = 1.0
    validation_fraction: float = 0.5
    # Part of --data held out for the final figures when no --eval-data is given.
    holdout_fraction: float = 0.25
    measure_runs: int = 50
    seed: int = 0
    compression: Compression = Compression.NONE  # how model files are stored in the bundle
    early_exit: EarlyExitConfig | None = None
    # --max-drop search: it chooses the graph passes, and ``max_drop`` covers the whole
    # recipe (float steps and int8) against the input model's accuracy.
    search: SearchConfig | ShippedConfig | None = None
    measure_steps: bool = True  # export, size and time the model after every graph step
    output_kind: OutputKind = OutputKind.CLASSIFIER  # recorded in the manifest for the agent
    validation_samples: int | None = None  # the bundle's health-check set; None: 10% of model bytes
    force: bool = False  # ship steps over ``max_drop`` (recorded as overruns) instead of refusing
    # The manifest's preprocessing steps: applied to --data here as the agent applies them.
    preprocessing: tuple[dict[str, Any], ...] = ()
    # --pick N: ship front candidate N of the last search (NAME.candidates/ beside the
    # bundle) as it is, instead of running passes and exports.
    pick: int | None = None

    def summary(self) -> dict[str, Any]:
        """The recipe as the report and the manifest record it."""
        return {
            "passes": [p.name for p in self.passes],
            "target": self.target.value,
            "int8": self.int8,
            "quantize": self.quantize.describe() if self.int8 else None,
            "max_drop_points": self.max_drop,
            "compression": self.compression.value,
            "early_exit": None if self.early_exit is None else self.early_exit.describe(),
            "search": self.search.describe() if self.search else None,
            "max_drop_covers": "every step",
            "output_kind": self.output_kind.value,
            "preprocessing": [dict(s) for s in self.preprocessing],
        }


@dataclass(frozen=True, kw_only=True)
class Job:
    """One run's inputs and outputs."""

    model: Path
    data: Path | Dataset  # a file or folder (--data), or a Dataset in memory (the Python API)
    out: Path
    name: str
    version: str = "0.1.0"
    eval_data: Path | Dataset | None = None
    source: str | None = None  # how the report names the model (default: its path)

    @property
    def data_name(self) -> str:
        """The data as an error message or the report names it."""
        return self.data.source if isinstance(self.data, Dataset) else str(self.data)


@dataclass
class _State:
    source: SourceModel
    model: Model
    calib: Dataset
    val: Dataset  # the selection split: every choice is made on it
    labels: tuple[str, ...]
    steps: list[StepRecord]
    work: Path
    held: Dataset  # the held-out split: final figures only
    held_source: str = ""
    chosen: dict[str, Any] = field(default_factory=dict)  # what a search chose
    overruns: list[Overrun] = field(default_factory=list)  # steps shipped over budget (--force)
    candidates: dict[str, bytes] = field(default_factory=dict)  # the search's front, for --pick


def optimize(job: Job, recipe: Recipe, *, progress: Progress = no_progress) -> Report:
    """Run ``recipe`` on ``job``; on any error nothing is left at ``job.out``."""
    from edge_sdk.bundle.assembly import write_outputs

    _check_output(job)
    work = Path(tempfile.mkdtemp(prefix="edge-optimize-"))
    try:
        picked = None if recipe.pick is None else candidate(job.out, recipe.pick, job.model)  # before loading
        state = _prepare(job, recipe, work, progress)
        if picked is None:
            _run_passes(state, recipe, progress)
            results = [_run_target(state, recipe, fmt, progress) for fmt in recipe.target.formats]
        else:
            results = [_picked(state, recipe, picked, progress)]
        held = _held_out(state, recipe, job, results, progress)
        comparisons = [_compare(state, r, recipe, progress, held) for r in results]
        cascade = _cascade(state, recipe, results, progress) if recipe.early_exit else None
        _time_target_steps(state, comparisons, results, recipe)
        report = Report(
            name=job.name, version=job.version, bundle=job.out, source=job.source or str(job.model),
            recipe={**recipe.summary(), **_searched(state, recipe, results),
                    "budget": budget.summary(recipe.max_drop, recipe.force, state.overruns),
                    "calibration_range": list(value_range(state.calib.x))},
            warnings=_range_warnings(state),
            steps=tuple(state.steps), targets=tuple(results),
            comparisons=tuple(comparisons),
            calibration_samples=min(len(state.calib), recipe.quantize.samples),
            validation_samples=len(state.val), cascade=cascade, held_out=held,
        )
        progress("writing bundle", 0, 1)
        return write_outputs(report, state.labels, compression=recipe.compression, held_out=state.val.x,
                             output_kind=recipe.output_kind, validation_samples=recipe.validation_samples,
                             preprocessing=recipe.preprocessing,
                             candidates=_candidate_files(state, recipe, job))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _range_warnings(state: _State) -> tuple[str, ...]:
    """The held-out data's values against the calibration data's (after preprocessing)."""
    why = range_mismatch(value_range(state.calib.x), value_range(state.val.x))
    return () if why is None else (f"--eval-data: {why}",)


def _candidate_files(state: _State, recipe: Recipe, job: Job) -> dict[str, bytes]:
    """``NAME.candidates/``: the front's model files and ``index.json`` (what ``--pick`` reads)."""
    if not state.candidates:
        return {}
    import json

    index = {**state.chosen, "format": recipe.target.formats[0].value, "labels": list(state.labels),
             "compression": recipe.compression.value, "files": sorted(state.candidates),
             "budget_points": recipe.max_drop, "int8": recipe.int8, "model_sha256": model_sha256(job.model)}
    return {**state.candidates, "index.json": json.dumps(index, indent=2).encode()}


def _check_output(job: Job) -> None:
    if job.out.suffix != ".edgepkg":
        raise EdgeError(f"{job.out}: the output must end in .edgepkg")
    if job.out.exists() and job.out.is_dir():
        raise EdgeError(f"{job.out}: is a folder; expected a bundle file name")
    # The manifest would refuse these only after minutes of work; refuse them first.
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", job.name):
        raise EdgeError(f"--name {job.name!r}: expected 1-128 of A-Z a-z 0-9 _ . -")
    parse_semver(job.version, what="--bundle-version")


def _prepare(job: Job, recipe: Recipe, work: Path, progress: Progress) -> _State:
    progress("loading model", 0, 1)
    source = load_source(job.model)
    if source.kind == SourceKind.TFLITE:
        raise EdgeError(f"{job.model}: a .tflite file is already converted; "
                        "optimize takes a Keras (.keras/.h5/SavedModel) or .onnx model")
    if source.kind == SourceKind.ONNX and ModelFormat.TFLITE in recipe.target.formats:
        raise EdgeError(f"{job.model}: an ONNX model can only be optimized to --target onnx "
                        f"(asked for {recipe.target.value})")
    if recipe.early_exit is not None:
        if not source.is_keras:
            raise EdgeError(f"{job.model}: --early-exit trains exit heads and needs a Keras "
                            f"model (.keras/.h5/SavedModel); got {source.kind.value}")
        check_exit_layers(source.obj, recipe.early_exit)
    shape, outputs = _io_shape(source)
    calib, val, held, held_source = _split(job, recipe, shape)
    for ds in (calib, val, held):
        y = ds.require_labels()
        if y.min() < 0 or y.max() >= outputs:
            raise EdgeError(f"{ds.source}: labels range {y.min()}..{y.max()}, but the model "
                            f"has {outputs} outputs")
    labels = calib.classes or tuple(str(i) for i in range(outputs))
    state = _State(source, source.obj, calib, val, labels, [], work, held, held_source)
    state.steps.append(_baseline(state))
    return state


def _io_shape(source: SourceModel) -> tuple[tuple[int, ...], int]:
    if source.is_keras:
        m = source.obj
        inp = tuple(-1 if d is None else int(d) for d in m.inputs[0].shape)
        return inp, int(m.outputs[0].shape[-1])
    model = load_model(source.path)
    return model.inputs[0].shape, int(model.outputs[0].shape[-1])


def _split(job: Job, recipe: Recipe, shape: tuple[int, ...]) -> tuple[Dataset, Dataset, Dataset, str]:
    """(calibration, selection, held-out, where the held-out split came from)."""
    from device_agent.preprocess import Pipeline
    from edge_sdk.measure.holdout import stratified_split

    steps = Pipeline.parse(recipe.preprocessing) if recipe.preprocessing else None
    data = fit_to_shape(load_dataset(job.data, steps), shape)
    if job.eval_data is not None:
        held = fit_to_shape(load_dataset(job.eval_data, steps), shape)
        source = f"--eval-data {job.eval_data.source if isinstance(job.eval_data, Dataset) else job.eval_data}"
    else:
        if len(data) < 4:
            raise EdgeError(f"{job.data_name}: {len(data)} sample(s); need at least 4 to split into "
                            "calibration, selection and held-out parts (or pass --eval-data)")
        h, rest = stratified_split(data.require_labels(), recipe.holdout_fraction, seed=recipe.seed + 1)
        held, data = data.subset(h), data.subset(rest)
        source = f"split of --data {job.data_name}"
    if len(data) < 2:
        raise EdgeError(f"{job.data_name}: {len(data)} sample(s); need at least 2 to split "
                        "into calibration and selection halves")
    val, calib = data.split(recipe.validation_fraction, seed=recipe.seed)
    return calib, val, held, source


def _accuracy(state: _State, model: Model) -> float:
    y = state.val.require_labels()
    if state.source.is_keras:
        return keras_accuracy(model, state.val.x, y)
    return artifact_accuracy(model.SerializeToString(), ModelFormat.ONNX, state.val.x, y)


def _cost(model: Model) -> analysis.ModelCost:
    if ModelKind.of(model) is ModelKind.ONNX:
        return analysis.onnx_cost(model)
    return analysis.keras_cost(model)


def _baseline(state: _State) -> StepRecord:
    cost = _cost(state.model)
    if state.source.kind == SourceKind.SAVED_MODEL:
        # Keras sees a SavedModel as one opaque layer; inspect counts its TFLite graph.
        from edge_sdk.model.inspect import describe

        info = describe(state.source.path)
        cost = analysis.ModelCost(params=info["params"], macs=info.get("macs_known_part", info["macs"]), layers=())
    return StepRecord(step="baseline", accuracy=_accuracy(state, state.model),
                      params=cost.params, macs=cost.macs,
                      bytes=analysis.file_size(state.source.path), note=state.source.kind.value)


def _run_passes(state: _State, recipe: Recipe, progress: Progress) -> None:
    ctx = PassContext(calibration=state.calib, validation=state.val, teacher=state.source.obj,
                      progress=progress, seed=recipe.seed)
    passes = recipe.passes
    if isinstance(recipe.search, ShippedConfig):
        from edge_sdk.recipe import shipped_search as shipped

        with candidate_latency(recipe.search, state.val.x) as latency:
            found = shipped.search(state.model, ctx, recipe.search, _judge(state, recipe, latency),
                                   state.steps[0].accuracy)
        passes, state.chosen = shipped.plan_steps(found), found.summary()
        state.candidates = found.front_files(recipe.target.formats[0].value)
    elif recipe.search is not None:
        from edge_sdk.recipe.search import plan

        passes, result = plan(state.model, ctx, recipe.search)
        state.chosen = result.summary()
    if passes and recipe.measure_steps:
        state.steps[0] = _sized(state, recipe, state.steps[0], state.model, progress)
    elif passes:
        # Not exported, so no bytes to compare with the later rows (the .keras file's are not).
        state.steps[0] = replace(state.steps[0], bytes=None)
    start = state.steps[-1].accuracy  # before the steps a recovery step will be judged with
    shipped_chain = isinstance(recipe.search, ShippedConfig)
    for i, p in enumerate(passes):
        progress(f"pass {p.name}", i, len(passes))
        outcome = p.apply(state.model, ctx)
        state.model = outcome.model
        cost = _cost(state.model)
        note = "; ".join([*(f"{k}={v}" for k, v in outcome.changes.items()), *outcome.notes])
        step = StepRecord(step=p.name, accuracy=_accuracy(state, state.model),
                          params=cost.params, macs=cost.macs, bytes=None, note=note)
        # A step followed by distillation is judged together with it: distillation exists
        # to win back what pruning lost. The shipped search's steps were judged as one
        # chain, as shipped (int8 included); a float step on the way may cost more than the
        # whole (97% sparsity at 0.57 points, back within 0.5 after sharing and int8), so
        # the whole recipe's drop is checked after export (``_searched``), not each step.
        recovered = i + 1 < len(passes) and passes[i + 1].name == "distill"
        if not recovered and not shipped_chain:
            name = p.name if p.name != "distill" or i == 0 else f"{passes[i - 1].name}+distill"
            _within_budget(state, recipe, name, start, step.accuracy)
            start = step.accuracy
        state.steps.append(_sized(state, recipe, step, state.model, progress)
                           if recipe.measure_steps else step)


# A candidate's single-sample p50 latency (ms) from its model file (path and bytes).
Latency = Callable[[Path, bytes], float]


@contextlib.contextmanager
def candidate_latency(config: ShippedConfig, x: np.ndarray) -> Iterator[Latency]:
    """How the search times a candidate: here, in this process's runtime; with
    ``--latency-on``, by that device's agent (one broker connection for the search)."""
    if config.latency_on is None:
        x = x.astype(np.float32)
        yield lambda path, data: measure_artifact(path, x, runs=20, isolated=False).latency_p50_ms
        return
    from edge_sdk.measure.device_bench import DeviceBench

    with DeviceBench(config.latency_on) as bench:
        yield lambda path, data: bench.measure(data, path.suffix.lstrip(".")).p50_ms


def _judge(state: _State, recipe: Recipe, latency: Latency) -> Callable[[Any], Any]:
    """How the search measures a candidate: as it ships (int8 unless --no-int8, the
    bundle's member compression), on the selection split through the runtime; its
    latency by ``latency`` (here, or on the --latency-on device)."""
    from edge_sdk.bundle.writer import compress
    from edge_sdk.measure.evaluate import predict_file, top1
    from edge_sdk.recipe.shipped_search import Shipped

    exporter = EXPORTERS[recipe.target.formats[0]]()
    x, y = state.val.x.astype(np.float32), state.val.require_labels()

    def judge(model: Model) -> Shipped:
        with tempfile.TemporaryDirectory(prefix="edge-candidate-") as tmp:
            work = Path(tmp)
            with converting(exporter.format, "search candidate export"):
                if recipe.int8:
                    cfg, _ = _shared_config(*_supported_config(recipe.quantize, exporter), model)
                    data = exporter.quantize(model, cfg, state.calib, work)
                else:
                    data = exporter.export_float(model, work)
            path = work / f"candidate.{exporter.format.value}"
            path.write_bytes(data)
            p50 = latency(path, data)
            cost = _cost(model)
            return Shipped(top1(predict_file(path, x), y), len(compress(data, recipe.compression)),
                           p50, cost.params, cost.macs, data)

    return judge


def _within_budget(state: _State, recipe: Recipe, step: str, before: float, after: float) -> None:
    """Refuse (or, with ``--force``, record) a step that takes the total over the budget."""
    over = budget.check_step(step, before=before, after=after, baseline=state.steps[0].accuracy,
                             budget=recipe.max_drop, force=recipe.force)
    if over is not None:
        state.overruns.append(over)


def _sized(state: _State, recipe: Recipe, step: StepRecord, model: Model,
           progress: Progress) -> StepRecord:
    """``step`` with the raw/compressed bytes and latency of ``model`` exported."""
    progress(f"measuring step {step.step}", 0, 1)
    with converting(ModelFormat.ONNX if ModelKind.of(model) is ModelKind.ONNX else ModelFormat.TFLITE,
                    f"export after step {step.step}"):
        size: StepSize = model_size(model, state.val.x, recipe.compression)
    note = step.note if step.step != "baseline" else f"{step.note}; bytes: exported float"
    return replace(step, bytes=size.raw_bytes, compressed_bytes=size.compressed_bytes,
                   latency_p50_ms=size.latency_p50_ms, note=note)


def _time_target_steps(state: _State, comparisons: list[Comparison], results: list[TargetResult],
                      recipe: Recipe) -> None:
    """The export and int8 steps get the latency the comparison measured."""
    by_step: dict[str, float] = {}
    for c, r in zip(comparisons, results, strict=True):
        export = f"export {c.format.value} float32"
        if r.baseline_path is None:
            by_step[export] = c.baseline.latency_p50_ms
        else:  # the comparison timed the input model; this export is the compressed float
            x = state.val.x.astype(np.float32)
            by_step[export] = measure_artifact(r.float_path, x, runs=recipe.measure_runs).latency_p50_ms
        by_step[f"int8 {c.format.value}"] = c.optimized.latency_p50_ms
    for i, s in enumerate(state.steps):
        if s.step in by_step:
            state.steps[i] = replace(s, latency_p50_ms=by_step[s.step])


def _searched(state: _State, recipe: Recipe, results: list[TargetResult]) -> dict[str, Any]:
    """The search's choice and the whole recipe's measured drop; over budget fails."""
    if recipe.pick is not None:
        return dict(state.chosen)
    if recipe.search is None:
        return {}
    base = state.steps[0].accuracy
    drops = {r.format.value: round(base - r.final_accuracy, 4) for r in results}
    over = {f: d for f, d in drops.items() if d > recipe.max_drop}
    if over and recipe.force:
        state.overruns += [budget.Overrun(f"searched recipe ({f})", d, d, recipe.max_drop)
                           for f, d in over.items()]
    elif over:
        steps = ", ".join(f"{s.step} {s.accuracy:.2f}%" for s in state.steps)
        raise EdgeError(f"--max-drop {recipe.max_drop}: nothing met the budget; the chosen recipe "
                        f"measured {over} points of drop after export (steps: {steps}). The bundle "
                        "was not written: raise --max-drop, or leave out --int8")
    return {"passes": [s["step"] for s in state.chosen["chosen"]], "search_result": state.chosen,
            "total_drop_points": drops}


def _float_export(state: _State, fmt: ModelFormat, progress: Progress) -> tuple[Path, bytes, float]:
    """The current model exported to float ``fmt`` in the run's folder for that format:
    (the file, its bytes, its accuracy on the selection split)."""
    work = state.work / fmt.value
    work.mkdir()
    progress(f"converting to float {fmt.value}", 0, 1)
    with converting(fmt, "float32 export"):
        data = EXPORTERS[fmt]().export_float(state.model, work)
    path = work / f"float.{fmt.value}"
    path.write_bytes(data)
    return path, data, artifact_accuracy(data, fmt, state.val.x, state.val.require_labels())


def _picked(state: _State, recipe: Recipe, picked: Picked, progress: Progress) -> TargetResult:
    """``--pick N``: the kept file of front candidate N is the target's final file, judged
    on this run's selection split against the budget like any step."""
    path, row, index = picked
    fmt = ModelFormat(index["format"])
    float_path, _, float_acc = _float_export(state, fmt, progress)
    data = path.read_bytes()
    final = float_path.with_name(f"picked.{fmt.value}")
    final.write_bytes(data)
    acc = artifact_accuracy(data, fmt, state.val.x, state.val.require_labels())
    label = f"#{recipe.pick} ({row['label']})"
    state.steps.append(StepRecord(step=f"pick {fmt.value}", accuracy=acc, params=int(row.get("params") or 0),
                                  macs=int(row.get("macs") or 0), bytes=len(data),
                                  compressed_bytes=_packed(data, recipe),
                                  note=f"candidate {label} of {path.parent.name}"))
    _within_budget(state, recipe, "pick", before=state.steps[0].accuracy, after=acc)
    state.chosen = {"picked": row, "from": path.parent.name, "search_result": {
        k: index[k] for k in ("objective", "front") if k in index}}
    return TargetResult(format=fmt, float_path=float_path, final_path=final,
                        float_accuracy=float_acc, final_accuracy=acc, decision=None,
                        notes=(f"picked candidate {label} from {path.parent.name}/",))


def _run_target(state: _State, recipe: Recipe, fmt: ModelFormat,
                progress: Progress) -> TargetResult:
    exporter = EXPORTERS[fmt]()
    float_path, float_bytes, float_acc = _float_export(state, fmt, progress)
    work = float_path.parent
    cost = _artifact_cost(fmt, float_bytes, state.model)
    state.steps.append(StepRecord(step=f"export {fmt.value} float32", accuracy=float_acc,
                                  params=cost.params, macs=cost.macs, bytes=len(float_bytes),
                                  compressed_bytes=_packed(float_bytes, recipe)))
    base_path, base_acc = _original_export(state, exporter, work)
    if not recipe.int8:
        return TargetResult(format=fmt, float_path=float_path, final_path=float_path, float_accuracy=float_acc,
                            final_accuracy=float_acc, decision=None, notes=(),
                            baseline_path=base_path, baseline_accuracy=base_acc)
    decision, notes = _quantize(state, recipe, exporter, float_acc, progress)
    final = work / f"int8.{fmt.value}"
    final.write_bytes(decision.data)
    state.steps.append(StepRecord(step=f"int8 {fmt.value}", accuracy=decision.chosen.accuracy,
                                  params=cost.params, macs=cost.macs, bytes=len(decision.data),
                                  compressed_bytes=_packed(decision.data, recipe),
                                  note=f"remedy: {decision.chosen.remedy}{_int8_note(fmt, decision.data)}"))
    return TargetResult(format=fmt, float_path=float_path, final_path=final,
                        float_accuracy=float_acc, final_accuracy=decision.chosen.accuracy,
                        decision=decision, notes=notes,
                        baseline_path=base_path, baseline_accuracy=base_acc)


def _int8_note(fmt: ModelFormat, data: bytes) -> str:
    """For ONNX: what the quantized file holds (int8 and float weights), read from it."""
    if fmt != ModelFormat.ONNX:
        return ""
    import onnx

    from edge_sdk.passes.quantize.onnx_prep import check_int8

    return "; " + check_int8(onnx.load_from_string(data)).describe()


def _original_export(state: _State, exporter: Exporter, work: Path) -> tuple[Path | None, float | None]:
    """The input model exported as is, when graph passes replaced it (else ``None``)."""
    if state.model is state.source.obj:
        return None, None
    fmt = exporter.format
    orig = work / "original"
    orig.mkdir()
    with converting(fmt, "float32 export of the input model"):
        data = exporter.export_float(state.source.obj, orig)
    path = orig / f"float.{fmt.value}"
    path.write_bytes(data)
    return path, artifact_accuracy(data, fmt, state.val.x, state.val.require_labels())


def _cascade(state: _State, recipe: Recipe, results: list[TargetResult],
             progress: Progress) -> CascadeResult:
    from edge_sdk.recipe.cascade_export import export_cascade

    assert recipe.early_exit is not None
    cfg = replace(recipe.early_exit, max_drop=recipe.max_drop, seed=recipe.seed)
    result = export_cascade(
        state.model, calib=state.calib, val=state.val, config=cfg,
        exporters=[EXPORTERS[r.format]() for r in results],
        quantize={r.format: r.decision.chosen.config if r.decision else None for r in results},
        full_models={r.format: r.final_path for r in results}, work=state.work,
        progress=progress, held=state.held,
    )
    for t in result.targets:
        note = (f"exits after {','.join(result.split_layers)}; thresholds "
                f"{[round(e.threshold, 4) for e in result.exits]}; exits per stage "
                f"{list(t.exit_counts)}")
        state.steps.append(StepRecord(step=f"early exit {t.format.value}", accuracy=t.accuracy,
                                      params=result.params, macs=round(result.mean_macs),
                                      bytes=t.bytes, note=note))
    return result


def _packed(data: bytes, recipe: Recipe) -> int:
    from edge_sdk.bundle.writer import compress

    return len(compress(data, codec(recipe.compression)))


def _int8_budget(state: _State, recipe: Recipe, float_acc: float) -> float:
    """Points int8 may cost against the float export: what the steps before it left of
    the whole recipe's budget (``max_drop`` covers every step)."""
    return round(recipe.max_drop - (state.steps[0].accuracy - float_acc), 6)


def _artifact_cost(fmt: ModelFormat, data: bytes, model: Model) -> analysis.ModelCost:
    if fmt == ModelFormat.ONNX:
        import onnx

        return analysis.onnx_cost(onnx.load_from_string(data))
    with tempfile.TemporaryDirectory(prefix="edge-cost-") as tmp:
        path = Path(tmp) / "float.tflite"
        path.write_bytes(data)
        from edge_sdk.model.inspect import describe

        info = describe(path)
    return analysis.ModelCost(params=info["params"], macs=info.get("macs_known_part", info["macs"]), layers=())


def _quantize(state: _State, recipe: Recipe, exporter: Exporter, float_acc: float,
              progress: Progress) -> tuple[Decision, tuple[str, ...]]:
    cfg, notes = _shared_config(*_supported_config(recipe.quantize, exporter), state.model)
    work = state.work / exporter.format.value
    x, y = state.val.x, state.val.require_labels()

    def score(data: bytes) -> float:
        return artifact_accuracy(data, exporter.format, x, y)

    progress(f"calibrating int8 {exporter.format.value}", 0, 1)
    decision = search(
        cfg, supported=exporter.calibrations,
        convert=lambda c: _quantize_once(exporter, state, c, work),
        evaluate=score,
        sensitive=lambda: _sensitive(exporter, state, cfg, score),
        reference=float_acc, max_drop=_int8_budget(state, recipe, float_acc), progress=progress,
        time_budget_s=INT8_SEARCH_BUDGET_S,
    )
    if not decision.within_budget and recipe.force:
        base = state.steps[0].accuracy
        state.overruns.append(budget.Overrun(
            f"int8 {exporter.format.value}", round(decision.chosen.drop, 4),
            round(base - decision.chosen.accuracy, 4), recipe.max_drop))
    elif not decision.within_budget:
        tried = ", ".join(f"{a.remedy} ({a.drop:+.2f})" for a in decision.attempts)
        after = f"after {decision.stopped}" if decision.stopped else "after every remedy"
        raise EdgeError(
            f"int8 {exporter.format.value}: accuracy drops {decision.chosen.drop:.2f} points, over "
            f"its budget of {decision.budget} (--max-drop {recipe.max_drop}) {after} "
            f"[{tried}]; --max-drop {max(decision.chosen.drop, 0.0) + 0.01:.2f} accepts the best of them "
            "(it bounds int8 alone with --no-search), give more calibration data, leave out --int8, "
            "or pass --force to ship it over budget"
        )
    return decision, notes


# The int8 remedy search stops trying new remedies after this long (the best so far wins
# or the failure names the --max-drop that accepts it).
INT8_SEARCH_BUDGET_S = 120.0


def _quantize_once(exporter: Exporter, state: _State, cfg: QuantizeConfig, work: Path) -> bytes:
    with converting(exporter.format, "int8 conversion"):
        return exporter.quantize(state.model, cfg, state.calib, work)


def _sensitive(exporter: Exporter, state: _State, cfg: QuantizeConfig,
               score: Callable[[bytes], float]) -> list[str]:
    work = state.work / exporter.format.value
    with converting(exporter.format, "sensitivity analysis"):
        return exporter.sensitive_layers(state.model, cfg, state.calib, work, score)


def _shared_config(cfg: QuantizeConfig, notes: tuple[str, ...],
                   model: Model) -> tuple[QuantizeConfig, tuple[str, ...]]:
    """Per-tensor weight scales for shared kernels: per-channel scales would turn each
    kernel's K values into up to K per channel, which the bundle's compressor cannot fold
    (the remedy search still tries per-channel when per-tensor costs the budget)."""
    from edge_sdk.passes.share.keras import kernels_shared

    if not cfg.per_channel or not kernels_shared(model):
        return cfg, notes
    return replace(cfg, per_channel=False), (*notes, "shared kernels: int8 weights use one scale "
                                             "per tensor, so each keeps its K shared values")


def _supported_config(cfg: QuantizeConfig,
                      exporter: Exporter) -> tuple[QuantizeConfig, tuple[str, ...]]:
    if cfg.calibration in exporter.calibrations:
        return cfg, ()
    fallback = exporter.calibrations[0]
    note = (f"{exporter.format.value} supports {[c.value for c in exporter.calibrations]} "
            f"calibration only; used {fallback.value} instead of {cfg.calibration.value}")
    return replace(cfg, calibration=fallback), (note,)


def _compare(state: _State, r: TargetResult, recipe: Recipe, progress: Progress,
             held: HeldOut) -> Comparison:
    """Before/after: sizes and timings, with the accuracies of the held-out split."""
    progress(f"timing {r.format.value} models", 0, 1)
    x = state.val.x.astype(np.float32)
    ref_path, _ = r.reference
    # The baseline is timed before and after the optimized model: how far its two runs
    # differ is the run-to-run spread a change must exceed to count as one.
    base = measure_artifact(ref_path, x, runs=recipe.measure_runs)
    opt = measure_artifact(r.final_path, x, runs=recipe.measure_runs)
    again = measure_artifact(ref_path, x, runs=recipe.measure_runs)
    d = held.drops[r.format.value]
    size = ref_path.stat().st_size
    first = ModelMetrics.of(size, d.baseline_accuracy, base)
    second = ModelMetrics.of(size, d.baseline_accuracy, again)
    return Comparison(
        format=r.format,
        baseline=first,
        optimized=ModelMetrics.of(r.final_path.stat().st_size, d.accuracy, opt),
        spread_pct=run_spread(first, second),
    )


def _held_out(state: _State, recipe: Recipe, job: Job, results: list[TargetResult],
              progress: Progress) -> HeldOut:
    """The input model against each target's final file, on the held-out split."""
    from edge_sdk.measure.evaluate import predict_file
    from edge_sdk.measure.holdout import HeldOut, paired_drop

    progress("held-out accuracy", 0, 1)
    x, y = state.held.x.astype(np.float32), state.held.require_labels()
    drops, selection = {}, {}
    for r in results:
        ref_path, ref_acc = r.reference
        base = predict_file(ref_path, x).reshape(len(x), -1).argmax(axis=1)
        final = predict_file(r.final_path, x).reshape(len(x), -1).argmax(axis=1)
        drops[r.format.value] = paired_drop(y, base, final)
        selection[r.format.value] = round(ref_acc - r.final_accuracy, 4)
    return HeldOut(source=state.held_source, from_data=job.eval_data is None,
                   samples=len(state.held), selection_samples=len(state.val), seed=recipe.seed + 1,
                   fraction=None if job.eval_data is not None else recipe.holdout_fraction,
                   budget=recipe.max_drop, drops=drops, selection_drops=selection)
