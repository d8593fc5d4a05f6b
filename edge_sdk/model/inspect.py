"""What an artifact holds: inputs, outputs, parameters, MACs, file size, and a bundle's
manifest. One describer per kind, chosen by a registry."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from device_agent.errors import EdgeError
from device_agent.protocol.manifest import TensorSpec
from edge_sdk.model import analysis


def _specs(specs: tuple[TensorSpec, ...]) -> list[dict[str, Any]]:
    return [asdict(s) for s in specs]


def _keras_io(model: Any, attr: str) -> list[dict[str, Any]]:
    return [{"name": t.name, "shape": [-1 if d is None else int(d) for d in t.shape],
             "dtype": str(t.dtype)} for t in getattr(model, attr)]


def _describe_keras(path: Path) -> dict[str, Any]:
    from edge_sdk.model.load import load_source

    model = load_source(path).obj
    cost = analysis.keras_cost(model)
    return {"kind": "keras", "inputs": _keras_io(model, "inputs"),
            "outputs": _keras_io(model, "outputs"), "params": cost.params, "macs": cost.macs,
            "layers": [asdict(c) for c in cost.layers]}


def _describe_saved_model(path: Path) -> dict[str, Any]:
    """Keras 3 sees a SavedModel as one opaque layer, so weights and MACs are counted on
    its float TFLite conversion instead."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from edge_sdk._quiet import quiet
    from edge_sdk.model.load import load_source

    model = load_source(path).obj
    with quiet():
        data = tf.lite.TFLiteConverter.from_saved_model(str(path)).convert()
    interp = Interpreter(model_content=data)
    interp.allocate_tensors()
    return {"kind": "saved_model", "inputs": _keras_io(model, "inputs"),
            "outputs": _keras_io(model, "outputs"), **_tflite_weights(interp)}


def _describe_onnx(path: Path, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, Any]:
    from device_agent.runtimes import load_model
    from edge_sdk.model.load import load_source

    proto = load_source(path).obj
    _check_shape_names(shapes, [i.name for i in proto.graph.input])
    cost = analysis.onnx_cost(proto, shapes)
    model = load_model(path)
    free = {k: v for k, v in analysis.dynamic_inputs(proto).items() if k not in shapes}
    info: dict[str, Any] = {"kind": "onnx", "inputs": _specs(model.inputs), "outputs": _specs(model.outputs),
                            "params": cost.params, "macs": cost.macs if not cost.unknown else _unknown(free),
                            "opset": _opset(proto), "ops": _op_counts(n.op_type for n in proto.graph.node)}
    if cost.notes:
        info["macs_notes"] = list(cost.notes)
    if cost.unknown:
        info["macs_known_part"] = cost.macs
    return info


def _unknown(free: Mapping[str, list[int | str]]) -> str:
    """What to say instead of a MAC count that depends on dimensions nobody fixed."""
    if not free:
        return "unknown: give --shape for the dynamic inputs"
    hint = " ".join(f"--shape {n}={'x'.join(str(d) for d in dims)}" for n, dims in free.items())
    return f"unknown: give {hint} (with numbers for the named dimensions)"


def _check_shape_names(shapes: Mapping[str, tuple[int, ...]], names: list[str]) -> None:
    unknown = sorted(set(shapes) - set(names))
    if unknown:
        raise EdgeError(f"--shape names {unknown}; the model's inputs are {names}")


def _opset(proto: Any) -> int:
    return max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)


def _op_counts(ops: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for op in ops:
        out[op] = out.get(op, 0) + 1
    return dict(sorted(out.items()))


def _describe_tflite(path: Path, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, Any]:
    from device_agent.runtimes import RuntimeOptions, load_model

    # Without XNNPACK: the delegate takes over the ops, and a resized input would leave
    # the intermediate shapes the MAC count reads at their first allocation.
    model = load_model(path, options=RuntimeOptions(xnnpack=False) if shapes else None)
    _check_shape_names(shapes, [s.name for s in model.inputs])
    inner = getattr(model.runtime, "_interp", None)
    info: dict[str, Any] = {"kind": "tflite", "backend": model.backend,
                            "inputs": _specs(model.inputs), "outputs": _specs(model.outputs)}
    if inner is None:
        return info
    for d in inner.get_input_details():
        if d["name"] in shapes:
            inner.resize_tensor_input(d["index"], list(shapes[d["name"]]))
    if shapes:
        inner.allocate_tensors()
    info.update(_tflite_weights(inner))
    free = {s.name: [d if d > 0 else "?" for d in s.shape] for s in model.inputs
            if s.name not in shapes and any(d <= 0 for d in s.shape[1:])}
    if free:
        info["macs_known_part"], info["macs"] = info["macs"], _unknown(free)
    return info


def _tflite_weights(interp: Any) -> dict[str, Any]:
    # Constant tensors (weights, biases) are the ones with a buffer but no producer; the
    # interpreter exposes them as tensors the graph reads but never writes.
    import numpy as np

    ops = interp._get_ops_details()
    written = {i for op in ops for i in op["outputs"]}
    read = {i for op in ops for i in op["inputs"] if i >= 0}
    inputs = {d["index"] for d in interp.get_input_details()}
    consts = read - written - inputs
    params = 0
    for d in interp.get_tensor_details():
        if d["index"] in consts and d["dtype"] not in (np.int64,) and len(d["shape"]) > 0:
            params += int(np.prod(d["shape"]))
    shapes = {d["index"]: [int(v) for v in d["shape"]] for d in interp.get_tensor_details()}
    macs = sum(_tflite_macs(op, shapes) for op in ops)
    return {"params": params, "macs": macs, "ops": _op_counts(op["op_name"] for op in ops)}


def _tflite_macs(op: dict[str, Any], shapes: dict[int, list[int]]) -> int:
    """MACs of one op at the allocated (batch 1) shapes; weights are ``inputs[1]``."""
    kind = op["op_name"]
    if kind not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") or len(op["inputs"]) < 2:
        return 0
    w, y = shapes.get(op["inputs"][1]), shapes.get(op["outputs"][0])
    if not w or not y:
        return 0
    if kind == "CONV_2D":  # weights [out, kh, kw, in]
        return analysis.conv_macs(y[1:3], w[0], w[1:3], w[3])
    if kind == "DEPTHWISE_CONV_2D":  # weights [1, kh, kw, channels]
        return analysis.depthwise_macs(y[1:3], w[3], 1, w[1:3])
    rows = 1
    for d in y[:-1]:
        rows *= d
    return analysis.dense_macs(rows, w[1], w[0])


def _describe_bundle(path: Path, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, Any]:
    from device_agent.bundle import read_manifest

    m = read_manifest(path)
    manifest = json.loads(m.to_json())
    summary = m.optimization.get("comparisons", [])
    return {"kind": "edgepkg", "name": m.name, "version": m.version,
            "targets": [t.value for t in m.targets], "inputs": _specs(m.inputs),
            "outputs": _specs(m.outputs), "labels": list(m.labels),
            "files": [{"path": f.path, "format": f.format.value, "size": f.size}
                      for f in m.files],
            "output_kind": m.output_kind.value, "optimization": summary, "manifest": manifest,
            **_bundle_cost(path)}


def _bundle_cost(path: Path) -> dict[str, Any]:
    """Parameters and MACs of the bundle's first target, every stage summed (each file's
    own figures are in ``stages``), counted on the verified, unpacked model files."""
    from device_agent.loader import opened_bundle

    with opened_bundle(path) as b:
        fmt = b.manifest.targets[0]
        stages = [{"path": f.path, **_cost_only(DESCRIBERS["." + f.format.value](b.root / f.unpacked_path, {}))}
                  for f in b.manifest.stage_files(fmt)]
    return {"params": sum(s["params"] for s in stages), "macs": sum(s["macs"] for s in stages),
            "stages": stages}


def _cost_only(info: dict[str, Any]) -> dict[str, Any]:
    return {"params": info.get("params", 0), "macs": info.get("macs", 0)}


def _describe_keras_shaped(path: Path, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, Any]:
    return _describe_keras(path)


DESCRIBERS: dict[str, Callable[[Path, Mapping[str, tuple[int, ...]]], dict[str, Any]]] = {
    ".keras": _describe_keras_shaped,
    ".h5": _describe_keras_shaped,
    ".hdf5": _describe_keras_shaped,
    ".onnx": _describe_onnx,
    ".tflite": _describe_tflite,
    ".edgepkg": _describe_bundle,
}


def describe(path: str | Path, shapes: Mapping[str, tuple[int, ...]] | None = None) -> dict[str, Any]:
    """A JSON-ready description of a model file, a SavedModel folder or a bundle.

    ``shapes`` (``--shape``) fix inputs' dynamic dimensions for the MAC count; without
    them a count that depends on a free dimension reads "unknown: give --shape ..."."""
    p = Path(path)
    if not p.exists():
        raise EdgeError(f"{p}: no such file or folder")
    if p.is_dir():
        info = _describe_saved_model(p)
        return {"path": str(p), "file_size": analysis.file_size(p), **info}
    fn = DESCRIBERS.get(p.suffix.lower())
    if fn is None:
        raise EdgeError(f"{p}: unknown artifact {p.suffix!r}; expected .keras, .h5, a "
                        f"SavedModel folder, {', '.join(k for k in DESCRIBERS if k != '.hdf5')}")
    info = fn(p, shapes or {})
    return {"path": str(p), "file_size": analysis.file_size(p), **info}
