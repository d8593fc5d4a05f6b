"""The ONNX side of the channel graph: an ONNX model read into the analysis's nodes
(:mod:`edge_sdk.core.channel_graph`), and the groups the ONNX pruner cuts, read off the analysis.

Reading (:func:`nodes_from_onnx`): a Conv (ungrouped) / Gemm / MatMul with its own constant
weight produces channels; BatchNormalization with its own constants, the activations,
pooling, Dropout, Identity and an Add of a per-channel constant bias pass them through; a
depthwise Conv passes them one to one; an Add of two activations of one shape merges them
(a residual); a Concat on axis 1 joins them; Flatten tiles each over its S spatial positions
in NCHW order (channel c at c·S … c·S+S−1). Anything else is opaque, with the reason; so is a
grouped (not depthwise) Conv, whose per-group channel counts are tied. Inputs past the first
(a weight, a bias, a scale) are side inputs: channels that reach one stay.

Groups (:func:`find_groups`): the pruner removes the same channel indices from whole
producers, so a group is the producers whose channels the analysis unites one to one. Its
per-channel ops and its consumers (the Conv / Gemm / MatMul layers that read it) are the
nodes whose maps hold its units: each reads channel c at ``offset + c·spatial`` … (a Concat
before it shifts the offset, a Flatten makes ``spatial`` the S positions). A chain is the
simple case: one producer, one consumer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from device_agent.errors import EdgeError
from edge_sdk.core.channel_graph import Analysis, Cause, Layout, Node, Role, Why, analyze
from edge_sdk.model.kind import OnnxModel

if TYPE_CHECKING:
    from onnx import NodeProto

PRODUCERS = {"Conv", "Gemm", "MatMul"}
CHANNEL_OPS = {
    "BatchNormalization", "Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh", "HardSigmoid",
    "HardSwish", "Elu", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
    "Dropout", "Identity", "Add", "Flatten", "Conv",  # Conv: depthwise only; Add: a bias only
}
_PARAMS_PER_POSITION = {"BatchNormalization", "Conv", "Add"}  # cut at one index per channel


class GraphIndex:
    """Lookups over a graph: nodes by name, consumers of a tensor, initializers, inferred shapes."""

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

    def width(self, tensor: str) -> int:
        """The inferred size of ``tensor``'s axis 1 (its channels), or 0 when unknown."""
        shape = self.shapes.get(tensor, ())
        return shape[1] if len(shape) > 1 and shape[1] > 0 else 0


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


def is_depthwise(ix: GraphIndex, node: NodeProto, n: int) -> bool:
    """A Conv with one filter per input channel (``n`` of them): channels pass through it one to one."""
    w = ix.arrays.get(node.input[1]) if len(node.input) > 1 else None
    return (
        w is not None and ix.single_use(node.input[1]) and ix.attr(node, "group", 1) == n
        and w.ndim == 4 and w.shape[0] == n and w.shape[1] == 1
    )


def with_node_names(model: OnnxModel) -> Any:
    """A copy of ``model`` in which every node has a unique name, none a graph input's (groups refer to names)."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    seen = {i.name for i in m.graph.input}
    for i, n in enumerate(m.graph.node):
        if not n.name or n.name in seen:
            n.name = f"{n.op_type}_{i}"
        seen.add(n.name)
    return m


# --- reading the graph into nodes ---------------------------------------------------


def nodes_from_onnx(model: OnnxModel) -> tuple[list[Node], list[str]]:
    """The graph's inputs and nodes as analysis nodes (graph inputs named by their tensor),
    and the names of the nodes whose outputs leave the model."""
    return _read(GraphIndex(model))


def _read(ix: GraphIndex) -> tuple[list[Node], list[str]]:
    g = ix.model.graph
    source: dict[str, str] = {}  # tensor -> the node that writes it
    widths: dict[str, int] = {}  # tensor -> channels, where shape inference does not say
    nodes = []
    for t in g.input:
        if t.name not in ix.inits:
            nodes.append(Node(t.name, "graph input", Role.INPUT, (), ix.width(t.name)))
            source[t.name] = t.name
    for n in g.node:
        node = _node(ix, n, source, widths)
        nodes.append(node)
        for o in n.output:
            source[o] = n.name
        widths[n.output[0]] = node.channels
    outputs = list(dict.fromkeys(source[o.name] for o in g.output if o.name in source))
    return nodes, outputs


def _node(ix: GraphIndex, n: NodeProto, source: dict[str, str], widths: dict[str, int]) -> Node:
    def width(t: str) -> int:
        return ix.width(t) or widths.get(t, 0)

    live = [i for i in n.input if i in source]  # tensors computed at run time, not initializers
    if n.op_type == "Concat" or _is_join_add(ix, n):
        data, side = live, []
    else:
        data = live[:1] if live and live[0] == n.input[0] else []
        side = live[len(data):]
    role, reason, spatial = _role(ix, n, width(n.input[0]) if n.input else 0)
    if role is not Role.OPAQUE and not data:
        role, reason = Role.OPAQUE, f"{n.name} ({n.op_type}) reads no activation as its data"
    if role is not Role.OPAQUE and any(o in ix.consumers or o in ix.outputs for o in n.output[1:]):
        role, reason = Role.OPAQUE, f"{n.name} ({n.op_type}) has a second output in use"
    if role is Role.PRODUCER:
        channels = out_channels(ix, n)
    elif role is Role.CONCAT:
        channels = sum(width(t) for t in data)
    elif role is Role.OPAQUE:
        channels = ix.width(n.output[0])
    else:
        channels = width(data[0]) * spatial
    return Node(
        n.name, n.op_type, role, tuple(source[t] for t in data), channels, spatial=spatial,
        layout=Layout.CHANNELS_FIRST if role is Role.FLATTEN else None, reason=reason,
        side_inputs=tuple(source[t] for t in side),
    )


def _role(ix: GraphIndex, n: NodeProto, width: int) -> tuple[Role, str, int]:
    """What ``n`` does to channels (reading ``width`` of them), why not when opaque, and a
    Flatten's spatial size."""
    op = n.op_type
    if op in PRODUCERS and weight_name(ix, n) is not None:
        return Role.PRODUCER, "", 1
    if op == "Concat":
        why = _concat_problem(ix, n)
        return (Role.OPAQUE, why, 1) if why else (Role.CONCAT, "", 1)
    if _is_join_add(ix, n):
        return Role.MERGE, "", 1
    why = _channel_op_problem(ix, n, width)
    if why:
        return Role.OPAQUE, why, 1
    if op == "Conv":
        return Role.DEPTHWISE, "", 1
    if op == "Flatten":
        shape = ix.shapes.get(n.input[0], ())
        if len(shape) < 2 or any(d < 0 for d in shape[2:]):
            return Role.OPAQUE, f"unknown shape before Flatten {n.name}", 1
        return Role.FLATTEN, "", math.prod(shape[2:])
    return Role.PASS, "", 1


def _is_join_add(ix: GraphIndex, node: NodeProto) -> bool:
    """An Add of two activation tensors (a residual), not an Add of a constant bias."""
    return (
        node.op_type == "Add" and len(node.input) == 2
        and all(i not in ix.inits for i in node.input)
        and ix.shapes.get(node.input[0], (-1,)) == ix.shapes.get(node.input[1], (-2,))
    )


def _concat_problem(ix: GraphIndex, node: NodeProto) -> str:
    rank = len(ix.shapes.get(node.input[0], ()))
    axis = int(ix.attr(node, "axis", 1))
    ins = list(node.input)
    if rank == 0 or (axis + rank if axis < 0 else axis) != 1 or len(set(ins)) != len(ins):
        return f"Concat {node.name} is not along the channel axis (or its shapes are unknown)"
    if any(i in ix.inits or not ix.width(i) for i in ins):
        return f"Concat {node.name}: unknown width of an input"
    return ""


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


# --- groups, read off the analysis --------------------------------------------------


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


@dataclass(frozen=True)
class Chain:
    """A group in its simplest form: one producer, per-channel ops, one consumer."""

    producer: str
    middle: tuple[str, ...]
    consumer: str
    channels: int
    spatial: int  # positions per channel in the consumer's input (1 unless flattened)


class ChannelGroups:
    """One analysis of a graph, and the group of any producer in it."""

    def __init__(self, ix: GraphIndex):
        self.ix = ix
        self.nodes, outputs = _read(ix)
        self.analysis = a = analyze(self.nodes, outputs)
        self.order = {n.name: i for i, n in enumerate(self.nodes)}
        self.readers: dict[int, list[Node]] = {}  # unit -> the nodes whose inputs hold it
        for node in self.nodes:
            for u in {a.unit(s) for m in a.in_maps[node.name] for s in m}:
                self.readers.setdefault(u, []).append(node)

    def of(self, seed: str) -> tuple[Group | None, str]:
        """The channel group of producer ``seed``, or None and the reason it cannot be pruned."""
        a = self.analysis
        if self.ix.nodes[seed].output[0] in self.ix.outputs:
            return None, "its output is a model output"
        units = [a.unit(s) for s in a.producers[seed]]
        held = set(units)
        why = a.why(held)
        if why is not None:
            return None, self._say(why)
        found = {n.name: n for u in held for n in self.readers.get(u, [])}
        readers = sorted(found.values(), key=lambda n: self.order[n.name])
        if len(held) != len(units):  # a residual Add ties a flattened tensor to its own channels
            flat = next((n.name for n in readers if n.role is Role.FLATTEN), "")
            return None, self._say(Why(Cause.MADE, flat)) if flat else "its channels are tied to one another"
        parts = self._parts(readers, units)
        if isinstance(parts, str):
            return None, parts
        middle, uses, joins = parts
        others = (p for p, slots in a.producers.items() if p != seed and any(a.unit(s) in held for s in slots))
        producers = [seed, *others]
        for p in producers[1:]:
            if [a.unit(s) for s in a.producers[p]] != units:
                return None, f"{p} joins its channel group with a different channel count"
        return Group(tuple(producers), middle, uses, len(units), joins), ""

    def _parts(
        self, readers: list[Node], units: list[int]
    ) -> tuple[tuple[tuple[str, int], ...], tuple[Use, ...], tuple[str, ...]] | str:
        """The per-channel ops (with offsets), consumers and joins among ``readers``, or why
        the pruner cannot cut the group where one of them reads it."""
        a, held = self.analysis, set(units)
        middle: list[tuple[str, int]] = []
        uses: list[Use] = []
        joins: list[str] = []
        for node in readers:
            maps = [m for m in a.in_maps[node.name] if any(a.unit(s) in held for s in m)]
            layout = _layout(a, maps[0], units)
            why_not = self._problem(node, maps, units, layout)
            if why_not:
                return why_not
            assert layout is not None  # _problem refuses any other arrangement
            if node.role is Role.PRODUCER:
                uses.append(Use(node.name, *layout))
            elif node.role in (Role.PASS, Role.DEPTHWISE, Role.MERGE):
                middle.append((node.name, layout[0]))
            if node.role in (Role.MERGE, Role.CONCAT):
                joins.append(node.name)
        return tuple(middle), tuple(uses), tuple(joins)

    def _problem(self, node: Node, maps: list[list[int]], units: list[int], layout: tuple[int, int] | None) -> str:
        """Why the pruner cannot cut the group where ``node`` reads it (``maps``: its inputs that hold it)."""
        name, op, a = node.name, node.kind, self.analysis
        if node.role is Role.CONCAT and len(maps) > 1:
            if all(set(units) <= {a.unit(s) for s in m} for m in maps):
                return f"Concat {name} takes the same channels twice"
            return self._say(Why(Cause.MADE, name))  # its branches together make the group
        if node.role is Role.MERGE and any([a.unit(s) for s in m] != units for m in maps):
            return f"residual Add {name} after a Concat or Flatten"
        if layout is None:
            return f"tensor {self.ix.nodes[name].input[0]} carries the channels at two different positions"
        if layout[1] != 1 and node.role is Role.FLATTEN:
            return f"unknown shape before Flatten {name}"
        if layout[1] != 1 and op in _PARAMS_PER_POSITION:
            return "a Conv after a Flatten" if node.role is Role.PRODUCER else f"{name} ({op}) after a Flatten"
        return ""

    def _say(self, why: Why) -> str:
        name = why.node
        op = self.ix.nodes[name].op_type if name in self.ix.nodes else "graph input"
        if why.cause is Cause.INPUT:
            return f"its channel group reaches graph input {name}"
        if why.cause is Cause.OUTPUT:
            outs = self.ix.nodes[name].output if name in self.ix.nodes else [name]
            return f"its channel group reaches model output {next(o for o in outs if o in self.ix.outputs)}"
        if why.cause is Cause.SIDE:
            return f"{name} ({op}) reads it as a non-data input"
        if why.cause is Cause.MADE:
            return f"its channel group is also produced by {name} ({op}), which the analysis cannot cut"
        return self.analysis.unknown[name]


def _layout(a: Analysis, slot_map: list[int], units: list[int]) -> tuple[int, int] | None:
    """(offset, spatial) when channel c of the group fills positions offset + c·spatial …
    offset + c·spatial + spatial − 1 of ``slot_map``; None for any other arrangement."""
    index = {u: c for c, u in enumerate(units)}
    held = [(i, index[a.unit(s)]) for i, s in enumerate(slot_map) if a.unit(s) in index]
    spatial = len(held) // len(units)
    if spatial == 0 or len(held) % len(units):
        return None
    offset = held[0][0]
    return (offset, spatial) if held == [(offset + k, k // spatial) for k in range(len(held))] else None


def find_groups(model: OnnxModel) -> tuple[list[Group], list[str]]:
    """Every prunable channel group in graph order, and why other producers were skipped.

    Nodes must have unique names that no graph input has (see :func:`with_node_names`).
    """
    names = [n.name for n in model.graph.node]
    inputs = {i.name for i in model.graph.input}
    if "" in names or len(set(names)) != len(names) or inputs & set(names):
        raise EdgeError("ONNX graph: node names are missing or repeated; name them with with_node_names()")
    ix = GraphIndex(model)
    cg = ChannelGroups(ix)
    groups: list[Group] = []
    skipped: list[str] = []
    seen: set[str] = set()
    for node in model.graph.node:
        grouped = node.op_type == "Conv" and ix.attr(node, "group", 1) != 1
        if grouped and cg.nodes[cg.order[node.name]].role is not Role.DEPTHWISE:  # depthwise: cut with its group
            skipped.append(f"{node.name} (Conv): grouped Conv (group={ix.attr(node, 'group', 1)}) is left unpruned")
        if grouped:
            continue
        if node.name in seen or node.name not in cg.analysis.producers:
            continue
        group, why = cg.of(node.name)
        if group is None:
            skipped.append(f"{node.name} ({node.op_type}): {why}")
        else:
            seen.update(group.producers)
            groups.append(group)
    return groups, skipped


def find_chains(model: OnnxModel) -> tuple[list[Chain], list[str]]:
    """The groups that are plain chains (one producer, one consumer), and every skip reason."""
    groups, skipped = find_groups(model)
    chains = [
        Chain(g.producers[0], tuple(m for m, _ in g.middle), g.uses[0].node, g.channels, g.uses[0].spatial)
        for g in groups if g.is_chain
    ]
    return chains, skipped
