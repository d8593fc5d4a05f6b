"""Parameter counts and multiply-accumulates (MACs) of Keras models and ONNX graphs.

The formulas are pure functions of shapes (``*_macs``); the walkers only read shapes out
of a ``keras.Model`` or an ``onnx.ModelProto``. MACs are per sample (batch 1); layers
without multiplications by weights (pooling, activations, batch norm at inference, which
runtimes fold into the previous convolution) count zero.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_sdk.model.kind import KerasModel, OnnxModel

if TYPE_CHECKING:
    from onnx import GraphProto, NodeProto, TensorProto, ValueInfoProto


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
    notes: tuple[str, ...] = ()  # what was counted where a choice was made (If branches)
    unknown: tuple[str, ...] = ()  # nodes whose MACs need a dimension nobody fixed

    @classmethod
    def of(cls, layers: Sequence[LayerCost], *, params: int | None = None) -> ModelCost:
        """Totals over ``layers``; ``params`` overrides the sum when the framework counts it better."""
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


def keras_cost(model: KerasModel) -> ModelCost:
    """Walk a built ``keras.Model`` (nested models included) layer by layer."""
    rows = list(_keras_rows(model))
    return ModelCost.of(rows, params=int(model.count_params()))


def _keras_rows(model: KerasModel) -> Iterator[LayerCost]:
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from _keras_rows(layer)
            continue
        kind = type(layer).__name__
        fn = KERAS_MACS.get(kind)
        yield LayerCost(layer.name, kind, int(layer.count_params()), fn(layer) if fn else 0)


# ---- ONNX ----------------------------------------------------------------------------

_NOT_WEIGHTS = ("_scale", "_zero_point")


def onnx_cost(model: KerasModel, shapes: Mapping[str, tuple[int, ...]] | None = None) -> ModelCost:
    """MACs of Conv, Gemm and MatMul nodes from shape inference at batch 1 (``shapes`` fix
    inputs' dynamic dimensions), through ``If`` (the larger branch, named in ``notes``)
    and ``Loop``/``Scan`` bodies (one iteration); params are the elements of weight
    initializers and ``Constant`` nodes in every graph (shape constants and quantization
    scales excluded). Nodes whose MACs depend on a dimension still unknown are listed in
    ``unknown`` instead of being counted with a guess."""
    import onnx

    fixed = _fixed_inputs(model, shapes or {})
    inferred = onnx.shape_inference.infer_shapes(fixed, data_prop=True)
    walk = _Walk(_dequantize_sources(inferred))
    rows = walk.graph(inferred.graph, {}, {})
    return ModelCost(params=walk.params, macs=sum(r.macs for r in rows), layers=tuple(rows),
                     notes=tuple(walk.notes), unknown=tuple(walk.unknown))


class _Walk:
    """One pass over a graph and its subgraphs: weight elements, MAC rows, notes."""

    def __init__(self, sources: dict[str, str]):
        self.sources = sources
        self.params = 0
        self.notes: list[str] = []
        self.unknown: list[str] = []

    def graph(self, g: GraphProto, outer_shapes: dict[str, tuple[int, ...] | None],
              outer_weights: dict[str, tuple[int, ...]]) -> list[LayerCost]:
        from onnx import numpy_helper

        weights = dict(outer_weights)
        for i in g.initializer:
            weights[i.name] = tuple(int(d) for d in i.dims)
            self.params += math.prod(i.dims) if _is_weight(i) else 0
        for n in g.node:
            if n.op_type == "Constant":
                t = next((a.t for a in n.attribute if a.name == "value"), None)
                if t is not None:
                    weights[n.output[0]] = tuple(int(d) for d in t.dims)
                    self.params += numpy_helper.to_array(t).size if _is_weight(t) else 0
        shapes = {**outer_shapes, **_value_shapes(g)}
        rows: list[LayerCost] = []
        for node in g.node:
            rows += self.node(node, shapes, weights)
        return rows

    def node(self, node: NodeProto, shapes: dict[str, tuple[int, ...] | None],
             weights: dict[str, tuple[int, ...]]) -> list[LayerCost]:
        name = node.name or node.output[0]
        if node.op_type == "If":
            branches = {a.name: self.graph(a.g, shapes, weights) for a in node.attribute if a.name.endswith("branch")}
            if not branches:
                return []
            macs = {b: sum(r.macs for r in rows) for b, rows in branches.items()}
            pick = max(macs, key=lambda b: macs[b])
            self.notes.append(f"If {name}: counted {pick.replace('_branch', '')} branch ({macs[pick]:,} MACs; "
                              + ", ".join(f"{b.replace('_branch', '')} {m:,}" for b, m in macs.items()) + ")")
            return branches[pick]
        if node.op_type in ("Loop", "Scan"):
            body = next((a.g for a in node.attribute if a.name == "body"), None)
            rows = [] if body is None else self.graph(body, shapes, weights)
            self.notes.append(f"{node.op_type} {name}: body counted once ({sum(r.macs for r in rows):,} MACs "
                              "per iteration)")
            return rows
        fn = ONNX_MACS.get(node.op_type)
        if fn is None:
            return []
        ins = [shapes.get(n) or weights.get(self.sources.get(n, n)) for n in node.input]
        out = shapes.get(node.output[0])
        a, b = [*ins, None, None][:2]
        if out is None and node.op_type == "MatMul" and a is not None and b is not None:
            out = (*a[:-1], b[-1])  # inside subgraphs inference often leaves no shape
        used = [t for t in (*ins[:2], out) if t is not None]
        if out is None or any(d < 0 for t in used for d in t):
            self.unknown.append(name)
            return [LayerCost(name, node.op_type, 0, 0)]
        return [LayerCost(name, node.op_type, 0, fn(node, ins, out))]


def _is_weight(init: TensorProto) -> bool:
    import onnx

    # int64 initializers are shapes and indices; scales and zero points are quantization
    # parameters, not weights.
    return bool(init.dims) and init.data_type != onnx.TensorProto.INT64 \
        and not init.name.endswith(_NOT_WEIGHTS)


def dynamic_inputs(model: OnnxModel) -> dict[str, list[int | str]]:
    """Graph inputs (initializers aside) with a dimension not fixed: name → dims, with
    the symbolic names (or ``"?"``) where a dimension is free."""
    inputs = _graph_inputs(model)
    batch = _batch_symbols(inputs)
    out: dict[str, list[int | str]] = {}
    for inp in inputs:
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                for d in inp.type.tensor_type.shape.dim]
        if any(isinstance(d, str) and d not in batch for d in dims[1:]):
            out[inp.name] = dims
    return out


def _graph_inputs(model: OnnxModel) -> list[ValueInfoProto]:
    init_names = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in init_names]


def _batch_symbols(inputs: list[ValueInfoProto]) -> set[str]:
    """The names of the inputs' first (batch) dimensions, e.g. ``{"N"}``."""
    return {i.type.tensor_type.shape.dim[0].dim_param for i in inputs
            if i.type.tensor_type.shape.dim and i.type.tensor_type.shape.dim[0].dim_param}


def _fixed_inputs(model: OnnxModel, shapes: Mapping[str, tuple[int, ...]]) -> Any:
    """A copy with the batch dimension 1 where it is free and ``shapes`` applied."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    inputs = _graph_inputs(m)
    # The batch dimension's name (often "N" or "batch") is 1 wherever it appears, also in
    # the middle of a state tensor [2, N, 128].
    batch = _batch_symbols(inputs)
    for inp in inputs:
        dims = inp.type.tensor_type.shape.dim
        for d in dims:
            if d.dim_param and d.dim_param in batch and inp.name not in shapes:
                d.dim_value = 1
        if inp.name in shapes:
            want = shapes[inp.name]
            if len(want) != len(dims):
                from device_agent.errors import EdgeError

                raise EdgeError(f"--shape {inp.name}: {len(want)} dimensions given, the input has {len(dims)}")
            for d, v in zip(dims, want, strict=True):
                d.dim_value = int(v)
        elif dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1
    return m


def _value_shapes(g: GraphProto) -> dict[str, tuple[int, ...] | None]:
    """Shapes of a graph's values; a dimension inference could not fix is -1."""
    out: dict[str, tuple[int, ...] | None] = {}
    for vi in [*g.input, *g.value_info, *g.output]:
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            continue
        out[vi.name] = tuple(int(d.dim_value) if d.HasField("dim_value") else -1 for d in t.shape.dim)
    return out


def _dequantize_sources(model: OnnxModel) -> dict[str, str]:
    # In a QDQ graph a weight reaches Conv/MatMul through DequantizeLinear; its shape is
    # the quantized initializer's.
    return {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}


def _o_conv(node: NodeProto, ins: list[tuple[int, ...] | None], out: tuple[int, ...] | None) -> int:
    w, y = ins[1], out
    if w is None or y is None:
        return 0
    group = next((a.i for a in node.attribute if a.name == "group"), 1)
    return conv_macs(y[2:], int(y[1]), w[2:], int(w[1]) * group, group)


def _o_gemm(node: NodeProto, ins: list[tuple[int, ...] | None], out: tuple[int, ...] | None) -> int:
    a = ins[0]
    if a is None or out is None:
        return 0
    trans_a = next((x.i for x in node.attribute if x.name == "transA"), 0)
    k = a[0] if trans_a else a[-1]
    return dense_macs(int(out[0]), int(k), int(out[-1]))


def _o_matmul(node: NodeProto, ins: list[tuple[int, ...] | None], out: tuple[int, ...] | None) -> int:
    a = ins[0]
    if a is None or out is None:
        return 0
    return dense_macs(math.prod(out[:-1]), int(a[-1]), int(out[-1]))


ONNX_MACS: dict[str, Callable[[NodeProto, list[tuple[int, ...] | None], tuple[int, ...] | None], int]] = {
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
