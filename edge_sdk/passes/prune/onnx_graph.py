"""Prunable channel groups in an ONNX graph: producers → per-channel ops → consumers.

A group starts at a Conv (ungrouped) / Gemm / MatMul and follows its output through ops
that keep channels apart (BatchNormalization, Relu, pooling, a per-channel bias Add, a
depthwise Conv, Flatten) to the Conv / Gemm / MatMul layers that read it. A residual Add of
two activations pulls every producer of either side into the same group (they must lose
the same channels); a channel-axis Concat places the group's channels at an offset in its
output. Removing channel c removes it from every producer and per-channel op, and the
matching input slice of every consumer (after a Flatten, the S positions c·S … c·S+S−1 of
the NCHW flattening). A chain is the simple case: one producer, one consumer.
Grouped (not depthwise) Convs are left unpruned: their per-group channel counts are tied.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from device_agent.errors import EdgeError
from edge_sdk.model.kind import OnnxModel

if TYPE_CHECKING:
    from onnx import NodeProto

PRODUCERS = {"Conv", "Gemm", "MatMul"}
CHANNEL_OPS = {
    "BatchNormalization", "Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh", "HardSigmoid",
    "HardSwish", "Elu", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
    "Dropout", "Identity", "Add", "Flatten", "Conv",  # Conv: depthwise only
}


@dataclass(frozen=True)
class Chain:
    """A group in its simplest form: one producer, per-channel ops, one consumer."""

    producer: str
    middle: tuple[str, ...]
    consumer: str
    channels: int
    spatial: int  # positions per channel in the consumer's input (1 unless flattened)

    def positions(self, keep: Iterable[int]) -> list[int]:
        """The consumer's input positions that the kept channels ``keep`` occupy."""
        return [c * self.spatial + p for c in keep for p in range(self.spatial)]


class GraphIndex:
    """Lookups over a graph: nodes by name, consumers of a tensor, initializers."""

    def __init__(self, model: OnnxModel):
        from onnx import numpy_helper

        g = model.graph
        self.model = model
        self.nodes = {n.name: n for n in g.node}
        self.inits = {t.name: t for t in g.initializer}
        self.arrays = {k: numpy_helper.to_array(v) for k, v in self.inits.items()}
        self.consumers: dict[str, list[NodeProto]] = {}
        for n in g.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.outputs = {o.name for o in g.output}
        self.shapes = _inferred_shapes(model)

    def attr(self, node: NodeProto, name: str, default: Any) -> Any:
        """The value of ``node``'s attribute ``name``, or ``default`` when it is not set."""
        from onnx import helper

        for a in node.attribute:
            if a.name == name:
                return helper.get_attribute_value(a)
        return default

    def single_use(self, tensor: str) -> bool:
        """Whether exactly one node reads ``tensor`` (so cutting its channels affects no one else)."""
        return len(self.consumers.get(tensor, [])) == 1


def _inferred_shapes(model: OnnxModel) -> dict[str, tuple[int, ...]]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    out = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        out[vi.name] = tuple(int(d.dim_value) if d.HasField("dim_value") else -1 for d in dims)
    return out


def weight_name(ix: GraphIndex, node: NodeProto) -> str | None:
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


def out_channels(ix: GraphIndex, node: NodeProto) -> int:
    """The number of output channels of a Conv, Gemm or MatMul, read from its weight."""
    w = ix.arrays[node.input[1]]
    if node.op_type == "Conv":
        return int(w.shape[0])
    if node.op_type == "Gemm" and ix.attr(node, "transB", 0):
        return int(w.shape[0])
    return int(w.shape[1])


def with_node_names(model: OnnxModel) -> Any:
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


def find_chains(model: OnnxModel) -> tuple[list[Chain], list[str]]:
    """The groups that are plain chains (one producer, one consumer), and every skip reason.

    Nodes must have unique names (see :func:`with_node_names`).
    """
    groups, skipped = find_groups(model)
    chains = [
        Chain(g.producers[0], tuple(m for m, _ in g.middle), g.uses[0].node, g.channels, g.uses[0].spatial)
        for g in groups if g.is_chain
    ]
    return chains, skipped


@dataclass(frozen=True)
class Use:
    """A consumer reading a group's channels: channel c sits at input positions
    ``offset + c*spatial … offset + c*spatial + spatial − 1`` along its axis 1."""

    node: str
    offset: int
    spatial: int

    def positions(self, channels: Iterable[int]) -> list[int]:
        """This consumer's input positions that ``channels`` occupy."""
        return [self.offset + c * self.spatial + p for c in channels for p in range(self.spatial)]


@dataclass(frozen=True)
class Group:
    """Producers whose output channels must be removed together, the per-channel ops
    between them (each with the offset of the group's channels in its tensor), and the
    consumers that read them. A residual Add of two activations joins its producers; a
    channel-axis Concat shifts the group's channels by the widths of the inputs before it."""

    producers: tuple[str, ...]
    middle: tuple[tuple[str, int], ...]
    uses: tuple[Use, ...]
    channels: int
    joins: tuple[str, ...] = ()  # the Add / Concat nodes the group passes through

    @property
    def is_chain(self) -> bool:
        """Whether the group is a plain :class:`Chain` (no joins, one producer, one consumer)."""
        return len(self.producers) == 1 and len(self.uses) == 1 and not self.joins


def find_groups(model: OnnxModel) -> tuple[list[Group], list[str]]:
    """Every prunable channel group in graph order, and why other producers were skipped."""
    names = [n.name for n in model.graph.node]
    if "" in names or len(set(names)) != len(names):
        raise EdgeError("ONNX graph: node names are missing or repeated; name them with with_node_names()")
    ix = GraphIndex(model)
    groups: list[Group] = []
    skipped: list[str] = []
    seen: set[str] = set()
    for node in model.graph.node:
        if node.op_type == "Conv" and ix.attr(node, "group", 1) != 1:
            skipped.append(f"{node.name} (Conv): grouped Conv (group={ix.attr(node, 'group', 1)}) is left unpruned")
            continue
        if node.name in seen or weight_name(ix, node) is None:
            continue
        group, why = trace_group(ix, node)
        if group is None:
            skipped.append(f"{node.name} ({node.op_type}): {why}")
        else:
            seen.update(group.producers)
            groups.append(group)
    return groups, skipped


def trace_group(ix: GraphIndex, seed: NodeProto) -> tuple[Group | None, str]:
    """The channel group of ``seed``'s output, or None and the reason it cannot be pruned."""
    t = _Tracer(ix, seed)
    why = t.run()
    if why:
        return None, why
    return Group(tuple(t.producers), tuple(t.middle), tuple(t.uses), t.n, tuple(t.joins)), ""


class _Tracer:
    """Closure over the tensors that carry the seed's channels, forwards and backwards."""

    def __init__(self, ix: GraphIndex, seed: NodeProto):
        self.ix, self.seed, self.n = ix, seed, out_channels(ix, seed)
        self.made_by = {o: n for n in ix.model.graph.node for o in n.output}
        self.producers: list[str] = [seed.name]
        self.middle: list[tuple[str, int]] = []
        self.uses: list[Use] = []
        self.joins: list[str] = []
        self.visited: set[str] = {seed.name}
        # tensor → (offset, spatial, whole): whole means it holds exactly the group's channels
        self.layout: dict[str, tuple[int, int, bool]] = {}
        self.queue: list[tuple[str, int, int, bool]] = [(seed.output[0], 0, 1, True)]

    def run(self) -> str:
        while self.queue:
            t, off, sp, whole = self.queue.pop(0)
            if t in self.layout:
                if self.layout[t] != (off, sp, whole):
                    return f"tensor {t} carries the channels at two different positions"
                continue
            self.layout[t] = (off, sp, whole)
            if t in self.ix.outputs:
                own = t == self.seed.output[0]
                return "its output is a model output" if own else f"its channel group reaches model output {t}"
            why = self._backward(t) if whole else ""
            for c in self.ix.consumers.get(t, []):
                why = why or self._forward(c, t, off, sp, whole)
            if why:
                return why
        return ""

    def _backward(self, t: str) -> str:
        node = self.made_by.get(t)
        if node is None:
            return f"its channel group reaches graph input {t}"
        if node.name in self.visited:
            return ""
        if node.op_type in PRODUCERS and weight_name(self.ix, node) is not None:
            if out_channels(self.ix, node) != self.n:
                return f"{node.name} joins its channel group with a different channel count"
            self.visited.add(node.name)
            self.producers.append(node.name)
            self.queue.append((node.output[0], 0, 1, True))
            return ""
        if _is_join_add(self.ix, node) or (node.op_type in CHANNEL_OPS and node.op_type != "Flatten"):
            self.queue.append((node.input[0], 0, 1, True))
            return self._forward(node, node.input[0], 0, 1, True)
        return f"its channel group is also produced by {node.name} ({node.op_type}), which the analysis cannot cut"

    def _forward(self, c: NodeProto, t: str, off: int, sp: int, whole: bool) -> str:
        if c.op_type == "Concat":  # may take several of the group's tensors: each gets a slice
            return self._concat(c, t, off, sp)
        if c.name in self.visited:
            return ""
        self.visited.add(c.name)
        if _is_join_add(self.ix, c):
            if not whole:
                return f"residual Add {c.name} after a Concat or Flatten"
            self.joins.append(c.name)
            self.middle.append((c.name, 0))
            self.queue.extend((i, 0, 1, True) for i in [*c.input, c.output[0]])
            return ""
        if c.input[0] != t:
            return f"{c.name} ({c.op_type}) reads it as a non-data input"
        if c.op_type in PRODUCERS and weight_name(self.ix, c) is not None:
            if c.op_type == "Conv" and sp != 1:
                return "a Conv after a Flatten"
            self.uses.append(Use(c.name, off, sp))
            return ""
        width = self._width(t)
        why = _channel_op_problem(self.ix, c, width)
        if why:
            return why
        if c.op_type == "Flatten":
            shape = self.ix.shapes.get(t, ())
            if len(shape) < 2 or any(d < 0 for d in shape[2:]) or sp != 1:
                return f"unknown shape before Flatten {c.name}"
            s = int(np.prod(shape[2:]))
            self.queue.append((c.output[0], off * s, s, False))
            return ""
        if sp != 1 and c.op_type in {"BatchNormalization", "Conv", "Add"}:
            return f"{c.name} ({c.op_type}) after a Flatten"
        self.middle.append((c.name, off))
        self.queue.append((c.output[0], off, sp, whole))
        return ""

    def _concat(self, c: NodeProto, t: str, off: int, sp: int) -> str:
        rank = len(self.ix.shapes.get(t, ()))
        axis = int(self.ix.attr(c, "axis", 1))
        if rank == 0 or (axis + rank if axis < 0 else axis) != 1 or list(c.input).count(t) != 1:
            return f"Concat {c.name} is not along the channel axis (or its shapes are unknown)"
        before = list(c.input)[: list(c.input).index(t)]
        widths = [self.ix.shapes.get(i, ())[1:2] for i in before]
        if any(len(w) != 1 or w[0] < 0 for w in widths):
            return f"Concat {c.name}: unknown width of an input"
        if c.name in self.joins:
            return f"Concat {c.name} takes the same channels twice"
        self.joins.append(c.name)
        self.queue.append((c.output[0], off + sum(w[0] for w in widths), sp, False))
        return ""

    def _width(self, t: str) -> int:
        shape = self.ix.shapes.get(t, ())
        return shape[1] if len(shape) > 1 and shape[1] > 0 else self.n


def _is_join_add(ix: GraphIndex, node: NodeProto) -> bool:
    """An Add of two activation tensors (a residual), not an Add of a constant bias."""
    return (
        node.op_type == "Add" and len(node.input) == 2
        and all(i not in ix.inits for i in node.input)
        and ix.shapes.get(node.input[0], (-1,)) == ix.shapes.get(node.input[1], (-2,))
    )


def _channel_op_problem(ix: GraphIndex, node: NodeProto, n: int) -> str:
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


def is_depthwise(ix: GraphIndex, node: NodeProto, n: int) -> bool:
    """A Conv with one filter per input channel: channels pass through it one to one."""
    w = ix.arrays.get(node.input[1]) if len(node.input) > 1 else None
    return (
        w is not None and ix.single_use(node.input[1]) and ix.attr(node, "group", 1) == n
        and w.ndim == 4 and w.shape[0] == n and w.shape[1] == 1
    )
