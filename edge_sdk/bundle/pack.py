"""``edge pack``: wrap a model that is already converted (``.tflite`` or ``.onnx``, from
anywhere) into a signed bundle the agent serves like any other.

Inputs and outputs are read from the file; what the file cannot say (labels, the output
kind, preprocessing, constants such as a sample rate) comes from a :class:`PackSpec`,
built from flags or a small TOML file. Validation inputs are recorded from data the user
gives, through the real runtime (or the manifest says there are none).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tomllib

from device_agent.errors import EdgeError
from device_agent.feeds import Feeder, Value
from device_agent.preprocess import Pipeline
from device_agent.protocol.manifest import (
    CarriedState,
    Compression,
    DetectionSpec,
    InputConstant,
    ModelFormat,
    OutputKind,
    TensorSpec,
)
from device_agent.protocol.validation import pack_named, replay, sample_budget
from device_agent.runtimes import format_of, load_model
from device_agent.runtimes.model import Model
from device_agent.state import StateStore


@dataclass(frozen=True, kw_only=True)
class PackSpec:
    """What the model file cannot say about itself."""

    name: str = "model"
    version: str = "0.1.0"
    labels: tuple[str, ...] = ()
    output_kind: OutputKind = OutputKind.CLASSIFIER
    detection: dict[str, Any] = field(default_factory=dict)  # DetectionSpec fields given
    preprocessing: tuple[dict[str, Any], ...] = ()
    constants: dict[str, Any] = field(default_factory=dict)  # input name → value(s)
    state: tuple[dict[str, Any], ...] = ()  # CarriedState fields: output, input, initial, reset_after_s
    int8: bool = False
    validation_samples: int | None = None  # None: as many as 10% of the model's bytes
    calibration_samples: int = 200
    compression: Compression = Compression.NONE


@dataclass(frozen=True)
class PackResult:
    """What was written: the bundle, its model bytes and the validation samples kept."""

    bundle: Path
    model_bytes: int
    bundle_bytes: int
    validation_samples: int
    validation_offered: int
    output_kind: str
    int8: bool
    int8_check: str | None = None  # what the int8 file holds, read from it

    def lines(self) -> list[str]:
        """What ``edge pack`` prints: the bundle, the model, int8 details and the validation kept."""
        kept = (f"{self.validation_samples} of {self.validation_offered} samples"
                if self.validation_offered else "none (no --data given)")
        return [
            f"bundle:      {self.bundle} ({self.bundle_bytes:,} bytes)",
            f"model:       {self.model_bytes:,} bytes{' (int8)' if self.int8 else ''}",
            *([f"int8:        {self.int8_check}"] if self.int8_check else []),
            f"output kind: {self.output_kind}",
            f"validation:  {kept}",
        ]


def spec_from_toml(path: Path) -> dict[str, Any]:
    """The table of a ``--spec`` TOML file (keys as :class:`PackSpec` fields)."""
    try:
        d = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise EdgeError(f"--spec {path}: no such file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise EdgeError(f"--spec {path}: not valid TOML ({e})") from None
    known = set(PackSpec.__dataclass_fields__)
    unknown = sorted(set(d) - known)
    if unknown:
        raise EdgeError(f"--spec {path}: unknown key(s) {unknown}; known: {sorted(known)}")
    return d


def default_name(out: Path) -> str:
    """A manifest name from the output file's stem, with characters a name may not hold replaced."""
    stem = out.name[: -len(".edgepkg")] if out.name.endswith(".edgepkg") else out.stem
    return re.sub(r"[^A-Za-z0-9_.-]", "-", stem)[:128] or "model"


def constants_for(inputs: tuple[TensorSpec, ...], values: Mapping[str, Any]) -> tuple[InputConstant, ...]:
    """Constants with the dtype and shape the model declares for those inputs."""
    by_name = {s.name: s for s in inputs}
    out = []
    for name, value in values.items():
        if name not in by_name:
            raise EdgeError(f"constant {name!r}: the model has no such input; inputs: {sorted(by_name)}")
        spec = by_name[name]
        flat = np.asarray(value, dtype=np.float64).reshape(-1)
        shape = tuple(d if d > 0 else 1 for d in spec.shape)
        if int(np.prod(shape)) != flat.size:
            raise EdgeError(f"constant {name!r}: {flat.size} value(s) for input shape {spec.shape}")
        out.append(InputConstant(name=name, dtype=spec.dtype, shape=shape, values=tuple(flat.tolist())))
    return tuple(out)


def detection_spec(outputs: tuple[TensorSpec, ...], given: Mapping[str, Any]) -> DetectionSpec:
    """The detection roles: as given, else the one output ending in 4 is the boxes and the
    one other output the scores."""
    d = dict(given)
    if "boxes" not in d:
        boxes = [o.name for o in outputs if o.shape and o.shape[-1] == 4]
        if len(boxes) != 1:
            raise EdgeError(f"--output-kind detection: say which output holds the boxes (--boxes NAME); "
                            f"outputs: {[(o.name, o.shape) for o in outputs]}")
        d["boxes"] = boxes[0]
    if "scores" not in d:
        rest = [o.name for o in outputs if o.name not in (d["boxes"], d.get("classes"))]
        if len(rest) != 1:
            raise EdgeError(f"--output-kind detection: say which output holds the scores (--scores NAME); "
                            f"outputs: {[o.name for o in outputs]}")
        d["scores"] = rest[0]
    try:
        det = DetectionSpec.from_dict(d)
        det.validate(outputs)
    except (KeyError, TypeError, ValueError) as e:
        raise EdgeError(f"detection settings: {e}") from None
    return det


def read_samples(path: Path, feeder: Feeder, what: str, pipeline: Pipeline) -> list[Value]:
    """Readings from ``--data``: an ``.npz`` with one array per input name (or ``x``),
    or any data file ``edge`` reads (for a model with one input), preprocessed by the
    manifest's steps as the agent will (so they are what the model is fed)."""
    from edge_sdk.model.data import load_dataset, load_named

    named = load_named(path)
    if named is not None:
        n = len(next(iter(named.values())))
        return [{k: v[i] for k, v in named.items()} for i in range(n)]
    fed = feeder.fed
    if len(fed) != 1:
        raise EdgeError(f"{path}: {what} takes {len(fed)} inputs {[s.name for s in fed]}; give an .npz "
                        "with one array per input name (first axis = samples)")
    return list(load_dataset(path, pipeline if pipeline else None).x)


def carried_state(model: Model, given: tuple[dict[str, Any], ...]) -> tuple[CarriedState, ...]:
    """The ``--state OUTPUT=INPUT`` mappings, checked against the model's names."""
    ins, outs = {s.name for s in model.inputs}, {s.name for s in model.outputs}
    out = []
    for d in given:
        try:
            st = CarriedState.from_dict(d)
        except (KeyError, TypeError, ValueError) as e:
            raise EdgeError(f"state {d}: expected output, input and optional initial, reset_after_s ({e})") from None
        if st.output not in outs or st.input not in ins:
            raise EdgeError(f"--state {st.output}={st.input}: the model's outputs are {sorted(outs)} and "
                            f"inputs {sorted(ins)}")
        out.append(st)
    return tuple(out)


def record_validation(model: Model, feeder: Feeder, samples: list[Value], budget: int) -> tuple[bytes, int]:
    """The validation member for the first ``budget`` samples and how many it holds.

    With carried state the samples are one stream: each gets the state the previous left."""
    names = [s.name for s in model.inputs]
    store = StateStore(feeder.state, model.inputs, clock=lambda: 0.0) if feeder.state else None
    tensors = []
    for v in samples[:budget]:
        tensors.append(feeder.tensors(v, store.current("") if store else None))
        if store is not None:
            raw = model.run_raw(*tensors[-1])
            store.update("", {s.name: r for s, r in zip(model.outputs, raw, strict=True)})
    stacked = {n: np.stack([t[k] for t in tensors]) for k, n in enumerate(names)}
    y = replay(model, stacked)
    return pack_named(tensors, names, y), len(tensors)


def quantize_onnx(path: Path, feeder: Feeder, samples: list[Value], spec: PackSpec, workdir: Path) -> bytes:
    """Static int8 (QDQ) through the converter's ONNX pass, calibrated on ``samples``."""
    import onnx

    from edge_sdk.model.data import Dataset
    from edge_sdk.passes.quantize.base import QuantizeConfig
    from edge_sdk.passes.quantize.onnx import OnnxExporter

    if not samples:
        raise EdgeError("--int8 needs --data: calibration inputs for the activation ranges")
    graph = onnx.load(str(path)).graph
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul")
           for n in graph.node):
        raise EdgeError(f"--int8: {path.name} is already quantized (it holds QuantizeLinear/QLinear "
                        "nodes); pack it as it is, without --int8")
    if len(feeder.specs) != 1:
        raise EdgeError(f"--int8: the model has {len(feeder.specs)} inputs; int8 packing takes one-input "
                        "models (pack it in float, or quantize it where it was exported)")
    x = np.concatenate([feeder.tensors(v)[0] for v in samples[: spec.calibration_samples]])
    cfg = QuantizeConfig(samples=spec.calibration_samples)
    return OnnxExporter().quantize(onnx.load(str(path)), cfg, Dataset(x.astype(np.float32), None, "--data"),
                                   workdir)


def pack(model_path: Path, out: Path, spec: PackSpec, *, data: Path | None = None,
         key: Path | None = None) -> PackResult:
    """Wrap ``model_path`` into the bundle ``out`` (signed with ``key`` when given)."""
    from edge_sdk.bundle.writer import ModelPayload, build_bundle

    fmt = format_of(model_path)
    signer = None
    if key is not None:
        from edge_sdk.bundle.signing import load_signer

        signer = load_signer(key)  # a bad key fails before any work
    if spec.int8 and fmt == ModelFormat.TFLITE:
        raise EdgeError(f"--int8: {model_path.name} is already converted to TFLite, which has no post-training "
                        "quantization of a converted file; quantize at conversion (edge optimize MODEL.keras "
                        "--int8) or pack the .tflite as it is")
    pipeline = Pipeline.parse(spec.preprocessing)
    model = load_model(model_path)
    feeder = Feeder(model.inputs, constants_for(model.inputs, spec.constants), carried_state(model, spec.state))
    detection = (detection_spec(model.outputs, spec.detection)
                 if spec.output_kind == OutputKind.DETECTION else None)
    samples = read_samples(data, feeder, model_path.name, pipeline) if data is not None else []
    with tempfile.TemporaryDirectory(prefix="edge-pack-") as tmp:
        path = model_path
        if spec.int8:
            path = Path(tmp) / f"int8.{fmt.value}"
            path.write_bytes(quantize_onnx(model_path, feeder, samples, spec, Path(tmp)))
            model = load_model(path)
        raw = path.read_bytes()
        check = _int8_check(raw) if spec.int8 else None
        validation, kept = None, 0
        if samples:
            per = sum(np.asarray(t).nbytes for t in feeder.tensors(samples[0]))
            budget = spec.validation_samples or sample_budget(per, len(raw))
            validation, kept = record_validation(model, feeder, samples, budget)
        payload = ModelPayload(data=raw, format=fmt, inputs=model.inputs, outputs=model.outputs)
        summary: dict[str, Any] = {
            "packed_from": model_path.name, "int8": check or False,
            "validation": (f"{kept} of {len(samples)} samples from {data.name}" if data is not None
                           else "none: no --data given")}
        arrays = [v for v in samples if not isinstance(v, Mapping)]
        if arrays:  # the value range the model was packed with, for eval's range check
            summary["calibration_range"] = [float(min(np.min(v) for v in arrays)),
                                            float(max(np.max(v) for v in arrays))]
        written, _ = build_bundle(
            out, name=spec.name, version=spec.version, models=[payload], compression=spec.compression,
            validation=validation, signer=signer, labels=spec.labels, preprocessing=tuple(pipeline.to_dicts()),
            output_kind=spec.output_kind, detection=detection, constants=feeder.constants, state=feeder.state,
            optimization=summary)
    return PackResult(bundle=written, model_bytes=len(raw), bundle_bytes=written.stat().st_size,
                      validation_samples=kept, validation_offered=len(samples),
                      output_kind=spec.output_kind.value, int8=spec.int8, int8_check=check)


def _int8_check(data: bytes) -> str:
    import onnx

    from edge_sdk.passes.quantize.onnx_prep import check_int8

    return check_int8(onnx.load_from_string(data)).describe()
