"""Prunable chains in an ONNX graph: producer → per-channel ops → one consumer.

A chain is a Conv (ungrouped) / Gemm / MatMul whose output reaches exactly one
Conv / Gemm / MatMul through single-consumer ops that keep channels apart
(BatchNormalization, Relu, pooling, a per-channel bias Add, a depthwise Conv, Flatten). Removing output
channel c of the producer removes c from those ops and the matching input slice of the
consumer (after a Flatten, the S positions c·S … c·S+S−1 of the NCHW flattening).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from device_agent.errors import EdgeError

PRODUCERS = {"Conv", "Gemm", "MatMul"}
CHANNEL_OPS = {
    "BatchNormalization", "Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh", "HardSigmoid",
    "HardSwish", "Elu", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
    "Dropout", "Identity", "Add", "Flatten", "Conv",  # Conv: depthwise only
}


@dataclass(frozen=True)
class Chain:
    producer: str
    middle: tuple[str, ...]
    consumer: str
    channels: int
    spatial: int  # positions per channel in the consumer's input (1 unless flattened)

    def positions(self, keep: Iterable[int]) -> list[int]:
        return [c * self.spatial + p for c in keep for p in range(self.spatial)]


class GraphIndex:
    """Lookups over a graph: nodes by name, consumers of a tensor, initializers."""

    def __init__(self, model: Any):
        from onnx import numpy_helper

        g = model.graph
        self.model = model
        self.nodes = {n.name: n for n in g.node}
        self.inits = {t.name: t for t in g.initializer}
        self.arrays = {k: numpy_helper.to_array(v) for k, v in self.inits.items()}
        self.consumers: dict[str, list[Any]] = {}
        for n in g.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.outputs = {o.name for o in g.output}
        self.shapes = _inferred_shapes(model)

    def attr(self, node: Any, name: str, default: Any) -> Any:
        from onnx import helper

        for a in node.attribute:
            if a.name == name:
                return helper.get_attribute_value(a)
        return default

    def single_use(self, tensor: str) -> bool:
        return len(self.consumers.get(tensor, [])) == 1


def _inferred_shapes(model: Any) -> dict[str, tuple[int, ...]]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    out = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        out[vi.name] = tuple(int(d.dim_value) if d.HasField("dim_value") else -1 for d in dims)
    return out


def weight_name(ix: GraphIndex, node: Any) -> str | None:
    """The initializer holding the node's weight matrix/kernel, if it is prunable."""
    if node.op_type not in PRODUCERS or len(node.input) < 2 or node.input[1] not in ix.inits:
        return None
    if not ix.single_use(node.input[1]):
        return None  # shared weights cannot be cut for one user
    if node.op_type == "Conv":
        w = ix.arrays[node.input[1]]
        auto_pad = ix.attr(node, "auto_pad", b"NOTSET")
        if ix.attr(node, "group", 1) != 1 or w.ndim != 4 or auto_pad not in (b"NOTSET", "NOTSET"):
            return None
    if node.op_type == "Gemm" and (
        ix.attr(node, "transA", 0) != 0 or ix.attr(node, "alpha", 1.0) != 1.0 or ix.attr(node, "beta", 1.0) != 1.0
    ):
        return None
    if node.op_type == "MatMul" and ix.arrays[node.input[1]].ndim != 2:
        return None
    return str(node.input[1])


def out_channels(ix: GraphIndex, node: Any) -> int:
    w = ix.arrays[node.input[1]]
    if node.op_type == "Conv":
        return int(w.shape[0])
    if node.op_type == "Gemm" and ix.attr(node, "transB", 0):
        return int(w.shape[0])
    return int(w.shape[1])


def with_node_names(model: Any) -> Any:
    """A copy of ``model`` in which every node has a unique name (chains refer to names)."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    seen: set[str] = set()
    for i, n in enumerate(m.graph.node):
        if not n.name or n.name in seen:
            n.name = f"{n.op_type}_{i}"
        seen.add(n.name)
    return m


def find_chains(model: Any) -> tuple[list[Chain], list[str]]:
    """Every prunable chain in graph order, and why other producers were skipped.

    Nodes must have unique names (see :func:`with_node_names`).
    """
    names = [n.name for n in model.graph.node]
    if "" in names or len(set(names)) != len(names):
        raise EdgeError("ONNX graph: node names are missing or repeated; name them with with_node_names()")
    ix = GraphIndex(model)
    chains, skipped = [], []
    for node in model.graph.node:
        if weight_name(ix, node) is None:
            continue
        chain, why = _follow(ix, node)
        if chain is None:
            skipped.append(f"{node.name} ({node.op_type}): {why}")
        else:
            chains.append(chain)
    return chains, skipped


def _follow(ix: GraphIndex, producer: Any) -> tuple[Chain | None, str]:
    n = out_channels(ix, producer)
    t, spatial = producer.output[0], 1
    middle: list[str] = []
    while True:
        if t in ix.outputs:
            return None, "its output is a model output"
        if not ix.single_use(t):
            return None, f"tensor {t} has {len(ix.consumers.get(t, []))} consumers"
        c = ix.consumers[t][0]
        if c.input[0] != t:
            return None, f"{c.name} ({c.op_type}) reads it as a non-data input"
        if c.op_type in PRODUCERS and weight_name(ix, c) is not None:
            if c.op_type == "Conv" and spatial != 1:
                return None, "a Conv after a Flatten"
            return Chain(producer.name, tuple(middle), c.name, n, spatial), ""
        why = _channel_op_problem(ix, c, n)
        if why:
            return None, why
        if c.op_type == "Flatten":
            shape = ix.shapes.get(t, ())
            if len(shape) < 2 or any(d < 0 for d in shape[2:]):
                return None, f"unknown shape before Flatten {c.name}"
            spatial = int(np.prod(shape[2:]))
        middle.append(c.name)
        t = c.output[0]


def _channel_op_problem(ix: GraphIndex, node: Any, n: int) -> str:
    if node.op_type not in CHANNEL_OPS:
        return f"{node.name} ({node.op_type}) is not an op the analysis knows"
    if node.op_type == "Conv" and not is_depthwise(ix, node, n):
        return f"{node.name} (Conv) is grouped or has no constant weight"
    if node.op_type == "Flatten" and ix.attr(node, "axis", 1) != 1:
        return f"Flatten {node.name} with axis != 1"
    if node.op_type == "BatchNormalization" and not all(i in ix.inits and ix.single_use(i) for i in node.input[1:5]):
        return f"BatchNormalization {node.name} without its own constant parameters"
    if node.op_type == "Add":
        b = ix.arrays.get(node.input[1]) if len(node.input) > 1 else None
        if b is None or b.size not in (1, n) or not ix.single_use(node.input[1]):
            return f"Add {node.name} is not a per-channel bias"
    return ""


def is_depthwise(ix: GraphIndex, node: Any, n: int) -> bool:
    """A Conv with one filter per input channel: channels pass through it one to one."""
    w = ix.arrays.get(node.input[1]) if len(node.input) > 1 else None
    return (
        w is not None and ix.single_use(node.input[1]) and ix.attr(node, "group", 1) == n
        and w.ndim == 4 and w.shape[0] == n and w.shape[1] == 1
    )
