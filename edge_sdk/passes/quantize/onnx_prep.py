"""ONNX graphs as exporters write them, made ready for static int8, and the check of
what the quantizer really did, read from the file it wrote.

Exporters often store weights as ``Constant`` nodes; ONNX Runtime's quantizer then sees
activations, wraps them in Q/DQ pairs and keeps every weight in float. Its own
pre-processing (``quant_pre_process``: shape inference and constant folding) turns them
into initializers first. Per-channel weight scales need opset 13 (the axis of
``DequantizeLinear``); older graphs are upgraded with onnx's version converter.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.model.kind import OnnxModel

PER_CHANNEL_OPSET = 13
_Q_OPS = ("QuantizeLinear", "DequantizeLinear")


@dataclass(frozen=True)
class Int8Check:
    """What a quantized graph holds: int8 weight tensors (per channel or per tensor) and
    float weight tensors left (Q/DQ scales aside)."""

    int8_weights: int
    int8_bytes: int
    per_channel: int
    float_weights: int
    float_bytes: int
    opset: int

    def describe(self) -> str:
        """The check in one line: int8 and float weights left, and the opset."""
        scales = (f"{self.per_channel} per-channel, {self.int8_weights - self.per_channel} per-tensor"
                  if self.int8_weights else "none")
        return (f"int8 weights: {self.int8_weights} tensors, {self.int8_bytes:,} bytes ({scales}); "
                f"float weights left: {self.float_weights} tensors, {self.float_bytes:,} bytes; opset {self.opset}")


def opset_of(model: OnnxModel) -> int:
    """The model's default-domain opset version (0 when it declares none)."""
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def prepare(model: OnnxModel, *, per_channel: bool) -> Any:
    """``model`` ready for the quantizer: opset ≥ 13 when per-channel is asked, then ONNX
    Runtime's ``quant_pre_process`` (``Constant`` nodes become initializers)."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if per_channel and opset_of(model) < PER_CHANNEL_OPSET:
        from onnx import version_converter

        model = version_converter.convert_version(model, PER_CHANNEL_OPSET)
    try:  # symbolic shape inference needs sympy; onnx's own shape inference runs anyway
        import sympy  # noqa: F401

        symbolic = True
    except ImportError:
        symbolic = False
    with tempfile.TemporaryDirectory(prefix="edge-qprep-") as tmp:
        src, out = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
        onnx.save(model, str(src))
        level = logging.getLogger().level
        try:
            quant_pre_process(str(src), str(out), skip_symbolic_shape=not symbolic)
        finally:
            logging.getLogger().setLevel(level)
        return onnx.load(str(out))


def check_int8(model: OnnxModel) -> Int8Check:
    """Count the weights a quantized graph stores as int8 and those still in float."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    scales = {n.input[1] for n in model.graph.node if n.op_type in _Q_OPS and len(n.input) > 1}
    zero_points = {n.input[2] for n in model.graph.node if n.op_type in _Q_OPS and len(n.input) > 2}
    int8 = per_channel = int8_bytes = 0
    for n in model.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in inits:
            a = numpy_helper.to_array(inits[n.input[0]])
            if a.dtype in (np.int8, np.uint8) and a.ndim > 1:
                int8 += 1
                int8_bytes += a.nbytes
                scale = numpy_helper.to_array(inits[n.input[1]]) if n.input[1] in inits else np.zeros(())
                per_channel += int(scale.size > 1)
    floats = [numpy_helper.to_array(i) for name, i in inits.items()
              if name not in scales and name not in zero_points]
    floats += [numpy_helper.to_array(a.t) for n in model.graph.node if n.op_type == "Constant"
               for a in n.attribute if a.name == "value"]
    floats = [a for a in floats if a.dtype.kind == "f" and a.size > 1]
    return Int8Check(int8_weights=int8, int8_bytes=int8_bytes, per_channel=per_channel,
                     float_weights=len(floats), float_bytes=sum(a.nbytes for a in floats),
                     opset=opset_of(model))
