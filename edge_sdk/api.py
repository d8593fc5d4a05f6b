"""The Python front door: what a notebook needs, one call each, running the same code as
the ``edge`` commands (which call these).

``optimize`` takes a model file or a model in memory (``keras.Model``, ``onnx.ModelProto``)
and data as a file, a :class:`~edge_sdk.model.data.Dataset` or an ``(x, y)`` pair, and
returns the :class:`~edge_sdk.recipe.result.Report` whose bundle and report files it wrote.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from device_agent.errors import EdgeError
from edge_sdk.model.data import Dataset
from edge_sdk.model.kind import Model, ModelKind
from edge_sdk.passes.base import Progress, no_progress
from edge_sdk.passes.early_exit.keras import EarlyExitConfig
from edge_sdk.recipe.compression import CompressionFlags
from edge_sdk.recipe.pipeline import Job, Recipe
from edge_sdk.recipe.result import Report

Data = str | Path | Dataset | tuple[np.ndarray, np.ndarray]


def make_recipe(
    *,
    target: str = "tflite",
    int8: bool = True,
    max_drop: float = 1.0,
    calibration: str = "minmax",
    samples: int = 200,
    runs: int = 50,
    prune: float | None = None,
    share: int | None = None,
    lowrank: float | None = None,
    distill: bool = False,
    compress: str = "none",
    early_exit: EarlyExitConfig | None = None,
) -> Recipe:
    """A :class:`Recipe` from the same choices as ``edge optimize``'s flags, checked."""
    from dataclasses import replace

    from device_agent.protocol.manifest import Compression
    from edge_sdk.passes.quantize.base import Calibration, QuantizeConfig
    from edge_sdk.recipe.compression import recipe_passes
    from edge_sdk.recipe.pipeline import Target

    tgt = _choice(Target, target, "--target", "tflite, onnx or both")
    cal = _choice(Calibration, calibration, "--calibration", "minmax, percentile or entropy")
    stored = _choice(Compression, compress, "--compress", "none, xz, deflate or zstd")
    if samples < 1 or max_drop < 0 or runs < 1:
        raise EdgeError("--samples and --runs must be at least 1 and --max-drop at least 0")
    flags = CompressionFlags(prune=prune, share=share, lowrank=lowrank, distill=distill)
    made = Recipe(target=tgt, int8=int8, max_drop=max_drop, measure_runs=runs,
                  quantize=QuantizeConfig(samples=samples, calibration=cal),
                  passes=recipe_passes(flags), compression=stored)
    return made if early_exit is None else replace(made, early_exit=early_exit)


def _choice(enum: Any, value: Any, flag: str, expected: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        raise EdgeError(f"{flag} {value!r}: expected {expected}") from None


def optimize(
    model: str | Path | Model,
    data: Data,
    *,
    out: str | Path,
    recipe: Recipe | None = None,
    name: str | None = None,
    version: str = "0.1.0",
    eval_data: Data | None = None,
    sign: str | Path | None = None,
    progress: Progress = no_progress,
) -> Report:
    """Optimize ``model`` into the bundle ``out`` (plus ``NAME.report.{json,md,png}``
    beside it) and return the report; on any error nothing is left at ``out``.

    ``recipe`` defaults to int8 alone (see :func:`make_recipe`); ``eval_data`` is data the model
    never saw, for the final figures (default: a stratified quarter of ``data``).
    """
    from edge_sdk.recipe.pipeline import optimize as run

    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="edge-api-") as tmp:
        path, source = _model_file(model, Path(tmp))
        job = Job(model=path, data=_dataset(data, "data"), out=out, name=name or default_name(out),
                  version=version, eval_data=None if eval_data is None else _dataset(eval_data, "eval_data"),
                  source=source)
        report = run(job, recipe or Recipe(), progress=progress)
    if sign is not None:
        from edge_sdk.bundle.signing import sign_bundle

        sign_bundle(report.bundle, Path(sign), report.bundle)
    return report


def default_name(out: Path) -> str:
    """The bundle's name from its file name: ``digits.edgepkg`` → ``digits``."""
    import re

    stem = out.name[: -len(".edgepkg")] if out.name.endswith(".edgepkg") else out.stem
    return re.sub(r"[^A-Za-z0-9_.-]", "-", stem)[:128] or "model"


def _model_file(model: str | Path | Model, tmp: Path) -> tuple[Path, str | None]:
    """A path the pipeline loads, and how the report names the model (None: the path)."""
    if isinstance(model, str | Path):
        return Path(model), None
    if ModelKind.of(model) is ModelKind.ONNX:
        path = tmp / "model.onnx"
        path.write_bytes(model.SerializeToString())
        return path, f"onnx.ModelProto {model.graph.name or '(unnamed graph)'}"
    if not hasattr(model, "save"):
        raise EdgeError(f"model: expected a file path, a keras.Model or an onnx.ModelProto; "
                        f"got {type(model).__name__}")
    path = tmp / "model.keras"
    model.save(path)
    return path, f"keras.Model {getattr(model, 'name', '')}".strip()


def _dataset(data: Data, what: str) -> Path | Dataset:
    """A data argument as the pipeline takes it: a path, or a Dataset in memory."""
    if isinstance(data, str | Path | Dataset):
        return Path(data) if isinstance(data, str) else data
    if isinstance(data, tuple) and len(data) == 2:
        x, y = (np.asarray(a) for a in data)
        if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
            raise EdgeError(f"{what}: y must be 1-D integer labels, one per row of x "
                            f"(x {x.shape}, y {y.shape} {y.dtype})")
        return Dataset(x.astype(np.float32), y.astype(np.int64), f"{what} (arrays)")
    raise EdgeError(f"{what}: expected a path, a Dataset or an (x, y) pair; got {type(data).__name__}")
