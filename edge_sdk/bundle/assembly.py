"""From a finished :class:`Report` to files: the bundle and ``NAME.report.*``, all or
nothing.

Everything is written into a staging folder beside the bundle first and renamed into
place only when every file is complete, so a failure leaves no partial output.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from device_agent.protocol.manifest import Compression, Manifest, ModelFormat, OutputKind
from device_agent.protocol.validation import sample_budget, smallest_exact
from device_agent.runtimes import load_model
from device_agent.update.health import stored_inputs, validation_inputs
from edge_sdk.bundle.writer import ModelPayload, build_bundle, compress
from edge_sdk.recipe.result import Report
from edge_sdk.report.render import report_paths, write_reports


def payloads(report: Report) -> list[ModelPayload]:
    """One model per target (one per stage and target for a cascade); tensor specs (with
    int8 scale/zero point) from the runtime."""
    if report.cascade is not None:
        return [_payload(p, t.format, stage=k)
                for t in report.cascade.targets for k, p in enumerate(t.files)]
    out = []
    for t in report.targets:
        model = load_model(t.final_path)
        out.append(ModelPayload(data=t.final_path.read_bytes(), format=t.format,
                                inputs=model.inputs, outputs=model.outputs))
    return out


def _payload(path: Path, fmt: ModelFormat, *, stage: int) -> ModelPayload:
    model = load_model(path)
    return ModelPayload(data=path.read_bytes(), format=fmt, stage=stage, inputs=model.inputs,
                        outputs=model.outputs)


def validation_npz(report: Report, held_out: np.ndarray, n: int | None = None, *,
                   compression: Compression = Compression.NONE) -> tuple[bytes, int]:
    """``validation.npz`` for the bundle and how many samples it holds: held-out inputs
    ``x`` and the outputs ``y`` the shipped artifact gives them, recorded through the
    real runtime.

    ``n`` samples when given; by default as many as fit in 10% of the model files'
    bytes as stored (``compression``: a model that compresses 3x carries a set a third
    the size, so the set stays a tenth of what ships), at least one. The agent's health
    check loads the manifest's first target and runs its stage 0, so that is the model
    recorded here (a cascade's first stage, else the model). When that model takes
    int8/uint8 input, ``x`` is stored quantized with its input parameters; otherwise in
    the narrowest dtype that gives back the same float32 values (float16 for k/16 pixels,
    uint8 for raw ones). ``y`` is recorded from exactly the stored inputs, so the replay
    stays exact.
    """
    if len(held_out) == 0:
        raise ValueError("validation_npz: no held-out inputs to record")
    first = report.cascade.targets[0].files[0] if report.cascade is not None else report.targets[0].final_path
    model = load_model(first)
    spec = model.inputs[0]
    x = np.ascontiguousarray(held_out, dtype=np.float32)
    stored = stored_inputs(x, spec) if spec.quantized else smallest_exact(x)
    if n is None:
        n = sample_budget(stored[0].nbytes, sum(len(compress(p.data, compression)) for p in payloads(report)))
    stored = stored[:n]
    y = np.asarray(model.predict1(validation_inputs(stored, spec)))
    buf = io.BytesIO()
    np.savez_compressed(buf, x=stored, y=y)  # a few KiB matter in a bundle of tens
    return buf.getvalue(), len(stored)


def shipped_bytes(manifest: Manifest, bundle_bytes: int) -> dict[str, int]:
    """What ships: the bundle's bytes, and per target its model files as stored."""
    out = {"bundle": bundle_bytes}
    for f in manifest.files:
        out[f.format.value] = out.get(f.format.value, 0) + f.size
    return out


def candidates_dir(bundle: Path) -> Path:
    """``NAME.candidates/`` beside ``NAME.edgepkg``: the search's front, for ``--pick``."""
    stem = bundle.name[: -len(".edgepkg")] if bundle.name.endswith(".edgepkg") else bundle.stem
    return bundle.with_name(f"{stem}.candidates")


def _stage_candidates(folder: Path, files: dict[str, bytes]) -> None:
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
        (folder / name).chmod(0o644)


def write_outputs(report: Report, labels: tuple[str, ...], *,
                  compression: Compression = Compression.NONE,
                  held_out: np.ndarray | None = None,
                  output_kind: OutputKind = OutputKind.CLASSIFIER,
                  validation_samples: int | None = None,
                  preprocessing: tuple[dict[str, Any], ...] = (),
                  candidates: dict[str, bytes] | None = None) -> Report:
    """Write the bundle and the three report files for ``report``; returns it.

    With ``held_out`` inputs the bundle carries a validation set (:func:`validation_npz`,
    ``validation_samples`` of them or as many as its byte budget allows).
    ``candidates`` (file name → bytes) go to ``NAME.candidates/`` beside the bundle,
    replacing an earlier search's.
    """
    validation = None
    if held_out is not None:
        validation, kept = validation_npz(report, held_out, validation_samples, compression=compression)
        report = replace(report, bundled_validation=kept)
    final = report.bundle
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        staged_bundle = stage / final.name
        _, manifest = build_bundle(staged_bundle, name=report.name, version=report.version,
                     models=payloads(report), labels=labels, compression=compression,
                     exits=report.cascade.exits if report.cascade is not None else (),
                     validation=validation,
                     optimization=report.optimization_summary(), output_kind=output_kind,
                     preprocessing=preprocessing)
        # mkstemp creates 0600 files; a bundle is meant to be copied and served.
        staged_bundle.chmod(0o644)
        report = replace(report, shipped=shipped_bytes(manifest, staged_bundle.stat().st_size))
        staged = report_paths(staged_bundle)
        write_reports(replace(report, bundle=final), staged)
        if candidates:
            _stage_candidates(stage / "candidates", candidates)
        targets = report_paths(final)
        for key, src in staged.items():
            os.replace(src, targets[key])
        if candidates:
            dest = candidates_dir(final)
            shutil.rmtree(dest, ignore_errors=True)
            os.replace(stage / "candidates", dest)
        os.replace(staged_bundle, final)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return report
