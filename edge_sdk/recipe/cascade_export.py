"""The pipeline's cascade export: the optimized Keras model → early-exit stages per target.

Early exit is not a graph pass (float model in, float model out): it turns one model
into several stage models, and its thresholds must be calibrated on the *converted*
stages that ship (int8 moves confidences). So it runs after the graph passes and the
full model's export, as the pipeline's last model step:

1. heads are trained on the calibration split by self-distillation (backbone frozen);
2. every stage is exported through the same exporters as the full model (TFLite float or
   int8, ONNX float or int8 QDQ), int8 stages calibrated on the previous stage's features;
3. thresholds are calibrated on the validation split with each target's stages,
   through ``device_agent``'s engine code, so the cascade stays within ``max_drop``
   points of the full model (the cascade's own last stage); each exit keeps the highest
   of the targets' thresholds, since one set of exits serves every target;
4. per target, the shipped cascade and the full model are run through the device
   engine, one input at a time: accuracy, exit counts and mean latency per input.

:func:`write_cascade_bundle` is the same export for a Keras model a user trained and wants
only early exit on (no graph passes): it writes the bundle and its report through the
same assembly as ``edge optimize``.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from device_agent.engine import Engine
from device_agent.exit_policy import rules_from_manifest
from device_agent.protocol.manifest import ExitStage, ModelFormat
from device_agent.runtimes import load_model
from edge_sdk.model.data import Dataset
from edge_sdk.model.kind import Model
from edge_sdk.passes.base import Progress, no_progress
from edge_sdk.passes.early_exit.keras import (
    Cascade,
    EarlyExitConfig,
    ExitCalibration,
    build_cascade,
    calibrate,
    stage_probabilities,
    with_thresholds,
)
from edge_sdk.passes.quantize.base import Exporter, QuantizeConfig
from edge_sdk.recipe.result import CascadeResult, CascadeTarget

# Inputs timed per model and repeats (median): enough for a stable mean on tiny models,
# small enough to add well under a second to a run.
TIMED_INPUTS = 200
TIMING_REPEATS = 5


def export_cascade(
    model: Model,
    *,
    calib: Dataset,
    val: Dataset,
    config: EarlyExitConfig,
    exporters: Sequence[Exporter],
    quantize: Mapping[ModelFormat, QuantizeConfig | None],
    full_models: dict[ModelFormat, Path],
    work: Path,
    progress: Progress = no_progress,
    held: Dataset | None = None,
) -> CascadeResult:
    """Build, export, calibrate and measure the cascade of ``model`` (a Keras model).

    ``quantize`` is, per format, the int8 setting chosen for the full model (None: float);
    ``full_models`` the full model's final file per format, timed against the cascade.
    Thresholds are calibrated on ``val``; accuracy and exits are measured on ``held``
    (the held-out split, when given), which calibration never saw.
    """
    progress("early exit: training exit heads", 0, 1)
    cascade = build_cascade(model, calib, config)
    samples = max((q.samples for q in quantize.values() if q is not None), default=1)
    inputs = _stage_inputs(cascade, calib.x[:samples])
    files = {}
    for ex in exporters:
        progress(f"early exit: exporting {ex.format.value} stages", 0, 1)
        files[ex.format] = _export(ex, cascade, inputs, quantize.get(ex.format),
                                   work / f"cascade-{ex.format.value}", config.float_first)
    progress("early exit: calibrating thresholds", 0, 1)
    cal = _calibrate(files, val, config, cascade.stage_macs)
    targets = []
    for fmt, paths in files.items():
        progress(f"early exit: timing {fmt.value} cascade against the full model", 0, 1)
        targets.append(_measure(fmt, paths, cal.exits, full_models[fmt], held or val))
    return CascadeResult(
        split_layers=cascade.split_layers, criterion=config.criterion.value, exits=cal.exits,
        stage_macs=cascade.stage_macs, full_macs=cal.full_macs, mean_macs=cal.mean_macs,
        full_accuracy=cal.full_accuracy, cascade_accuracy=cal.cascade_accuracy,
        exit_rates=cal.exit_rates, max_drop=config.max_drop, calibrated_on=tuple(files),
        targets=tuple(targets), params=sum(int(s.count_params()) for s in cascade.stages),
    )


def _calibrate(files: Mapping[ModelFormat, Sequence[Path]], val: Dataset,
               config: EarlyExitConfig, stage_macs: Sequence[int]) -> ExitCalibration:
    """Thresholds per target, then the highest of them per exit: each target's stages
    convert (and quantize) a little differently, and one set of exits serves them all."""
    y = val.require_labels()
    probs = [stage_probabilities([load_model(p) for p in paths], val.x) for paths in files.values()]
    cals = [calibrate(p, y, criterion=config.criterion, max_drop=config.max_drop,
                      stage_macs=stage_macs) for p in probs]
    thresholds = [max(c.exits[k].threshold for c in cals) for k in range(len(cals[0].exits))]
    return with_thresholds(probs[0], y, thresholds, criterion=config.criterion,
                           stage_macs=stage_macs)


def _stage_inputs(cascade: Cascade, x: np.ndarray) -> list[np.ndarray]:
    """Each stage's calibration input: the data, then the previous float stage's features."""
    out = [x.astype(np.float32)]
    for stage in cascade.stages[:-1]:
        out.append(np.asarray(stage.predict(out[-1], verbose=0)[0], dtype=np.float32))
    return out


def _export(exporter: Exporter, cascade: Cascade, inputs: list[np.ndarray],
            quantize: QuantizeConfig | None, work: Path, float_first: bool) -> tuple[Path, ...]:
    from edge_sdk.passes.quantize.base import converting

    paths = []
    for k, stage in enumerate(cascade.stages):
        d = work / f"stage{k}"
        d.mkdir(parents=True)
        with converting(exporter.format, f"early-exit stage {k} export"):
            if quantize is None:
                data = exporter.export_float(stage, d)
            else:
                # keep_float names nodes of the full model's graph, not of the stages.
                keep = _float_first(exporter, stage, quantize, inputs[0]) if k == 0 and float_first else ()
                cfg = replace(quantize, keep_float=keep)
                data = exporter.quantize(stage, cfg, Dataset(inputs[k], None, f"stage{k}"), d)
        path = work / f"stage{k}.{exporter.format.value}"
        path.write_bytes(data)
        paths.append(path)
    return tuple(paths)


def _float_first(exporter: Exporter, stage: Model, quantize: QuantizeConfig, x: np.ndarray) -> tuple[str, ...]:
    """Stage 0's first layer, to keep in float (TFLite only: see ``EarlyExitConfig``)."""
    if exporter.format is not ModelFormat.TFLITE:
        return ()
    from edge_sdk.passes.quantize.tflite import first_layer

    return (first_layer(stage, quantize, Dataset(x, None, "stage0")),)


def _measure(fmt: ModelFormat, paths: Sequence[Path], exits: Sequence[ExitStage], full: Path,
             val: Dataset) -> CascadeTarget:
    y = val.require_labels()
    casc = Engine([load_model(p) for p in paths])
    casc.rules = rules_from_manifest(exits, len(paths))
    base = Engine(load_model(full))
    probs, stage = casc.cascade(val.x.astype(np.float32))
    n_stages = len(paths)
    full_acc = _accuracy(base.cascade(val.x.astype(np.float32))[0], y)
    x = list(val.x[:TIMED_INPUTS].astype(np.float32))
    t_full, t_casc = [], []
    _per_input_ms(base, x[:20])  # warm-up: first invokes allocate and pick kernels
    _per_input_ms(casc, x[:20])
    for _ in range(TIMING_REPEATS):  # interleaved, so drift on a shared machine hits both
        t_full.append(_per_input_ms(base, x))
        t_casc.append(_per_input_ms(casc, x))
    return CascadeTarget(
        format=fmt, files=tuple(paths), accuracy=_accuracy(probs, y), full_accuracy=full_acc,
        exit_counts=tuple(int(c) for c in np.bincount(stage, minlength=n_stages)),
        latency_full_ms=round(statistics.median(t_full), 5),
        latency_cascade_ms=round(statistics.median(t_casc), 5),
        sizes=tuple(p.stat().st_size for p in paths),
    )


def _accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    return round(float((probs.argmax(axis=1) == y).mean() * 100.0), 4)


def _per_input_ms(engine: Engine, xs: list[np.ndarray]) -> float:
    t0 = time.perf_counter()
    for x in xs:
        engine.infer_one(x)
    return (time.perf_counter() - t0) * 1000.0 / max(len(xs), 1)


def write_cascade_bundle(
    out: str | Path,
    model: Model,
    train: Dataset,
    val: Dataset,
    cfg: EarlyExitConfig,
    *,
    name: str,
    version: str = "1.0.0",
    int8: bool = False,
    labels: tuple[str, ...] = (),
    preprocessing: tuple[dict[str, Any], ...] = (),
    onnx: bool = False,
    progress: Progress = no_progress,
) -> tuple[Path, CascadeResult]:
    """Early exit on a trained Keras model: heads trained on ``train``, stages exported by
    the recipe's exporters, thresholds calibrated on ``val`` with the shipped stages, then
    the bundle and ``NAME.report.*`` written together (all or nothing).

    ``int8`` quantizes the TFLite stages; ``onnx`` adds float ONNX stages beside them (for
    ONNX Runtime devices). ``train`` and ``val`` are already preprocessed; ``preprocessing``
    is recorded in the manifest for the agent to apply to raw inputs.
    """
    from edge_sdk.bundle.assembly import write_outputs
    from edge_sdk.passes.quantize.onnx import OnnxExporter
    from edge_sdk.passes.quantize.tflite import TFLiteExporter
    from edge_sdk.recipe.result import Report

    exporters: list[Exporter] = [TFLiteExporter()] + ([OnnxExporter()] if onnx else [])
    q8 = QuantizeConfig(samples=min(200, len(train))) if int8 else None
    quantize = {ModelFormat.TFLITE: q8, ModelFormat.ONNX: None}
    with tempfile.TemporaryDirectory(prefix="edge-exit-") as tmp:
        work = Path(tmp)
        full = {ex.format: _full_model(ex, model, quantize[ex.format], train, work) for ex in exporters}
        result = export_cascade(model, calib=train, val=val, config=cfg, exporters=exporters,
                                quantize=quantize, full_models=full, work=work, progress=progress)
        recipe = {"passes": [], "int8": int8, "early_exit": cfg.describe(),
                  "target": "both" if onnx else "tflite", "onnx_stages": "float" if onnx else None}
        report = Report(name=name, version=version, bundle=Path(out), source="a trained Keras model",
                        recipe=recipe, steps=(), targets=(), comparisons=(),
                        calibration_samples=len(train), validation_samples=len(val), cascade=result)
        write_outputs(report, labels, preprocessing=tuple(preprocessing))
    return Path(out), result


def _full_model(exporter: Exporter, model: Model, quantize: QuantizeConfig | None, train: Dataset,
                work: Path) -> Path:
    """The whole model as the target would ship it without exits: what the cascade is timed against."""
    from edge_sdk.passes.quantize.base import converting

    d = work / f"full-{exporter.format.value}"
    d.mkdir()
    with converting(exporter.format, "full model export"):
        data = (exporter.export_float(model, d) if quantize is None
                else exporter.quantize(model, quantize, Dataset(train.x[:quantize.samples], None, "calibration"), d))
    path = work / f"full.{exporter.format.value}"
    path.write_bytes(data)
    return path
