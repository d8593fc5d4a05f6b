"""From a finished :class:`Report` to files: the bundle and ``NAME.report.*``, all or
nothing.

Everything is written into a staging folder beside the bundle first and renamed into
place only when every file is complete, so a failure leaves no partial output.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from device_agent.manifest import Compression, ModelFormat
from device_agent.runtimes import load_model
from edge_sdk.bundle_writer import ModelPayload, build_bundle
from edge_sdk.report import Report, report_paths, write_reports


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


def write_outputs(report: Report, labels: tuple[str, ...], *,
                  compression: Compression = Compression.NONE) -> Report:
    """Write the bundle and the three report files for ``report``; returns it."""
    final = report.bundle
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        staged_bundle = stage / final.name
        build_bundle(staged_bundle, name=report.name, version=report.version,
                     models=payloads(report), labels=labels, compression=compression,
                     exits=report.cascade.exits if report.cascade is not None else (),
                     optimization=report.optimization_summary())
        # mkstemp creates 0600 files; a bundle is meant to be copied and served.
        staged_bundle.chmod(0o644)
        staged = report_paths(staged_bundle)
        write_reports(replace(report, bundle=final), staged)
        targets = report_paths(final)
        for key, src in staged.items():
            os.replace(src, targets[key])
        os.replace(staged_bundle, final)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return report
