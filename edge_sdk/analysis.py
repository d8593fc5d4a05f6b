"""Parameter counts and multiply-accumulates (MACs) of Keras models and ONNX graphs.

The formulas are pure functions of shapes (``*_macs``); the walkers only read shapes out
of a ``keras.Model`` or an ``onnx.ModelProto``. MACs are per sample (batch 1); layers
without multiplications by weights (pooling, activations, batch norm at inference, which
runtimes fold into the previous convolution) count zero.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class LayerCost:
    """One layer's (or node's) weights and per-sample MACs."""

    name: str
    kind: str
    params: int
    macs: int


@dataclass(frozen=True)
class ModelCost:
    """The whole model: totals and the per-layer rows they sum."""

    params: int
    macs: int
    layers: tuple[LayerCost, ...]

    @classmethod
    def of(cls, layers: Sequence[LayerCost], *, params: int | None = None) -> ModelCost:
        total = sum(c.params for c in layers) if params is None else params
        return cls(params=total, macs=sum(c.macs for c in layers), layers=tuple(layers))


# ---- pure formulas -------------------------------------------------------------------


def conv_macs(out_spatial: Sequence[int], out_channels: int, kernel: Sequence[int],
              in_channels: int, groups: int = 1) -> int:
    """A (grouped) convolution: every output element sums ``k·in/groups`` products."""
    return math.prod(out_spatial) * out_channels * math.prod(kernel) * (in_channels // groups)


def depthwise_macs(out_spatial: Sequence[int], in_channels: int, multiplier: int,
                   kernel: Sequence[int]) -> int:
    """A depthwise convolution: one ``k``-tap filter per output channel."""
    return math.prod(out_spatial) * in_channels * multiplier * math.prod(kernel)


def dense_macs(rows: int, in_features: int, units: int) -> int:
    """A dense layer (or MatMul/Gemm) applied to ``rows`` vectors."""
    return rows * in_features * units


# ---- Keras ---------------------------------------------------------------------------


def _spatial(shape: Sequence[Any]) -> list[int]:
    return [int(d) for d in shape[1:-1]]


def _k_conv(layer: Any) -> int:
    out = layer.output.shape
    cin = int(layer.input.shape[-1])
    groups = getattr(layer, "groups", 1)
    return conv_macs(_spatial(out), int(out[-1]), layer.kernel_size, cin, groups)


def _k_depthwise(layer: Any) -> int:
    cin = int(layer.input.shape[-1])
    out = _spatial(layer.output.shape)
    return depthwise_macs(out, cin, layer.depth_multiplier, layer.kernel_size)


def _k_separable(layer: Any) -> int:
    out = layer.output.shape
    cin = int(layer.input.shape[-1])
    mid = cin * layer.depth_multiplier
    return (depthwise_macs(_spatial(out), cin, layer.depth_multiplier, layer.kernel_size)
            + conv_macs(_spatial(out), int(out[-1]), (1,), mid))


def _k_dense(layer: Any) -> int:
    shape = layer.input.shape
    rows = math.prod(int(d) for d in shape[1:-1])
    return dense_macs(rows, int(shape[-1]), int(layer.units))


# Keyed by Keras class name; anything else counts zero MACs (pooling, activations, ...).
KERAS_MACS: dict[str, Callable[[Any], int]] = {
    "Conv1D": _k_conv,
    "Conv2D": _k_conv,
    "Conv3D": _k_conv,
    "DepthwiseConv1D": _k_depthwise,
    "DepthwiseConv2D": _k_depthwise,
    "SeparableConv1D": _k_separable,
    "SeparableConv2D": _k_separable,
    "Dense": _k_dense,
}


def keras_cost(model: Any) -> ModelCost:
    """Walk a built ``keras.Model`` (nested models included) layer by layer."""
    rows = list(_keras_rows(model))
    return ModelCost.of(rows, params=int(model.count_params()))


def _keras_rows(model: Any) -> Any:
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from _keras_rows(layer)
            continue
        kind = type(layer).__name__
        fn = KERAS_MACS.get(kind)
        yield LayerCost(layer.name, kind, int(layer.count_params()), fn(layer) if fn else 0)


# ---- ONNX ----------------------------------------------------------------------------

_NOT_WEIGHTS = ("_scale", "_zero_point")


def onnx_cost(model: Any) -> ModelCost:
    """MACs of Conv, Gemm and MatMul nodes from shape inference at batch 1; params are
    the elements of weight initializers (shape constants and quantization scales
    excluded)."""
    import onnx

    fixed = _batch_one(model)
    inferred = onnx.shape_inference.infer_shapes(fixed, data_prop=True)
    shapes = _value_shapes(inferred)
    inits = {i.name: tuple(int(d) for d in i.dims) for i in inferred.graph.initializer}
    params = sum(math.prod(i.dims) for i in inferred.graph.initializer if _is_weight(i))
    sources = _dequantize_sources(inferred)
    rows = []
    for node in inferred.graph.node:
        fn = ONNX_MACS.get(node.op_type)
        if fn is None:
            continue
        ins = [sources.get(n, n) for n in node.input]
        macs = fn(node, [shapes.get(n) or inits.get(n) for n in ins], shapes.get(node.output[0]))
        rows.append(LayerCost(node.name or node.output[0], node.op_type, 0, macs))
    return ModelCost(params=int(params), macs=sum(r.macs for r in rows), layers=tuple(rows))


def _is_weight(init: Any) -> bool:
    import onnx

    # int64 initializers are shapes and indices; scales and zero points are quantization
    # parameters, not weights.
    return bool(init.dims) and init.data_type != onnx.TensorProto.INT64 \
        and not init.name.endswith(_NOT_WEIGHTS)


def _batch_one(model: Any) -> Any:
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    init_names = {i.name for i in m.graph.initializer}
    for inp in m.graph.input:
        if inp.name in init_names:
            continue
        dims = inp.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1
    return m


def _value_shapes(model: Any) -> dict[str, tuple[int, ...] | None]:
    out: dict[str, tuple[int, ...] | None] = {}
    g = model.graph
    for vi in [*g.input, *g.value_info, *g.output]:
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else 1 for d in t.shape.dim]
        out[vi.name] = tuple(int(d) for d in dims)
    return out


def _dequantize_sources(model: Any) -> dict[str, str]:
    # In a QDQ graph a weight reaches Conv/MatMul through DequantizeLinear; its shape is
    # the quantized initializer's.
    return {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}


def _o_conv(node: Any, ins: list[Any], out: Any) -> int:
    w, y = ins[1], out
    if w is None or y is None:
        return 0
    group = next((a.i for a in node.attribute if a.name == "group"), 1)
    return conv_macs(y[2:], int(y[1]), w[2:], int(w[1]) * group, group)


def _o_gemm(node: Any, ins: list[Any], out: Any) -> int:
    a = ins[0]
    if a is None or out is None:
        return 0
    trans_a = next((x.i for x in node.attribute if x.name == "transA"), 0)
    k = a[0] if trans_a else a[-1]
    return dense_macs(int(out[0]), int(k), int(out[-1]))


def _o_matmul(node: Any, ins: list[Any], out: Any) -> int:
    a = ins[0]
    if a is None or out is None:
        return 0
    return dense_macs(math.prod(out[:-1]), int(a[-1]), int(out[-1]))


ONNX_MACS: dict[str, Callable[[Any, list[Any], Any], int]] = {
    "Conv": _o_conv,
    "Gemm": _o_gemm,
    "MatMul": _o_matmul,
}


# ---- files ---------------------------------------------------------------------------


def file_size(path: str | os.PathLike[str]) -> int:
    """Bytes of a file, or of every file below a folder (a SavedModel)."""
    p = Path(path)
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return p.stat().st_size
