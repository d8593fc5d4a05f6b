"""Channel dependency analysis for Keras models: which channels must be removed together.

Pure: works on :class:`Node` records (layer name, class, config, input names, shapes),
never on TensorFlow objects. :func:`nodes_from_keras` is the one adapter that reads a
live model into nodes.

Every channel a layer creates gets a *slot* id. A layer's output is described by the
slot at each position of its last axis (a :class:`TensorMap`): pass-through layers copy
their input's map, ``Concatenate`` joins maps, ``Flatten`` tiles a map over the spatial
positions, a depthwise convolution repeats each slot ``depth_multiplier`` times. An
elementwise merge (``Add``...) unites the slots at equal positions, so both sides of a
residual go together, and so does a squeeze-and-excitation block: global pool, a
``Reshape`` that keeps the channel axis ((N, C) → (N, 1, 1, C)), two dense/1×1 convs, and
a ``Multiply`` with the feature map unite the excitation's outputs with the channels it
scales. Slots united this way form one *unit*: removing a unit removes
one output channel of each producer in it, the batch-norm entries that follow, and the
matching input rows of every consumer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edge_sdk.model.kind import KerasModel

Shape = tuple[int | None, ...]


@dataclass(frozen=True)
class Node:
    """One layer call: its name, Keras class, config, input layer names and shapes."""

    name: str
    kind: str
    config: Mapping[str, Any]
    inputs: tuple[str, ...]
    in_shapes: tuple[Shape, ...]
    out_shape: Shape


class _UnionFind:
    def __init__(self) -> None:
        self.parent: list[int] = []

    def new(self, n: int) -> list[int]:
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        return list(range(start, start + n))

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclass
class Analysis:
    """The result: the slot map of every layer's output and input, and what is blocked."""

    out_maps: dict[str, list[int]] = field(default_factory=dict)
    in_maps: dict[str, list[list[int]]] = field(default_factory=dict)
    producers: dict[str, list[int]] = field(default_factory=dict)  # slots each producer creates
    blocked: set[int] = field(default_factory=set)
    unknown: dict[str, str] = field(default_factory=dict)  # layer -> why it is not understood
    uf: _UnionFind = field(default_factory=_UnionFind)

    def unit(self, slot: int) -> int:
        """The unit (root slot) a channel slot belongs to after all the joins."""
        return self.uf.find(slot)

    def blocked_units(self) -> set[int]:
        """Units that keep every channel: the model's inputs and outputs and what touches an unknown layer."""
        return {self.unit(s) for s in self.blocked}

    def units(self) -> dict[int, list[str]]:
        """Every prunable unit (root slot) and the producers that own a channel of it."""
        blocked = self.blocked_units()
        out: dict[int, list[str]] = {}
        for name, slots in self.producers.items():
            for s in slots:
                u = self.unit(s)
                if u not in blocked:
                    out.setdefault(u, [])
                    if name not in out[u]:
                        out[u].append(name)
        return out


# --- layer roles -------------------------------------------------------------------

PRODUCERS = {"Conv1D", "Conv2D", "Conv3D", "Dense", "SeparableConv1D", "SeparableConv2D"}
DEPTHWISE = {"DepthwiseConv1D", "DepthwiseConv2D"}
MERGES = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"}
PASS_THROUGH = {
    "BatchNormalization", "Activation", "ReLU", "LeakyReLU", "ELU", "Dropout",
    "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
    "GaussianDropout", "AlphaDropout", "MaxPooling1D", "MaxPooling2D", "MaxPooling3D",
    "AveragePooling1D", "AveragePooling2D", "AveragePooling3D", "ZeroPadding1D",
    "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D",
    "UpSampling1D", "UpSampling2D", "UpSampling3D", "Identity", "GlobalAveragePooling1D",
    "GlobalAveragePooling2D", "GlobalAveragePooling3D", "GlobalMaxPooling1D",
    "GlobalMaxPooling2D", "GlobalMaxPooling3D",
}


def _last_axis(axis: Any, ndim: int) -> bool:
    if isinstance(axis, list | tuple):
        return len(axis) == 1 and _last_axis(axis[0], ndim)
    return axis == -1 or axis == ndim - 1


def unsupported_reason(node: Node) -> str | None:
    """Why ``node`` cannot take part in pruning, or None when the analysis understands it."""
    cfg, kind = node.config, node.kind
    if cfg.get("data_format", "channels_last") != "channels_last":
        return f"{kind} with data_format={cfg['data_format']!r} (only channels_last)"
    if kind in PRODUCERS and int(cfg.get("groups", 1)) != 1:
        return f"grouped {kind} (groups={cfg['groups']})"
    if kind == "BatchNormalization" and not _last_axis(cfg.get("axis", -1), len(node.out_shape)):
        return f"BatchNormalization over axis {cfg.get('axis')} (only the channel axis)"
    if kind == "Concatenate" and not _last_axis(cfg.get("axis", -1), len(node.out_shape)):
        return f"Concatenate on axis {cfg.get('axis')} (only the channel axis)"
    if kind in ("Activation",) and cfg.get("activation") == "softmax":
        return "softmax across channels"
    if kind == "Reshape" and not keeps_channel_axis(node):
        return (f"Reshape from {node.in_shapes[0][1:]} to {node.out_shape[1:]} moves the channel axis "
                "(only reshapes whose last axis stays the channels are understood)")
    known = PRODUCERS | DEPTHWISE | MERGES | PASS_THROUGH | {"InputLayer", "Concatenate", "Flatten", "Reshape"}
    if kind not in known:
        return f"{kind} is not a layer the channel analysis knows"
    return None


def keeps_channel_axis(node: Node) -> bool:
    """A reshape that leaves the last axis alone: (N, C) → (N, 1, 1, C) in a squeeze-and-
    excitation block, (N, H, W, C) → (N, H·W, C). Channel ``c`` stays at position ``c`` of
    the last axis, so the channel map passes through unchanged."""
    if len(node.in_shapes) != 1:
        return False
    c_in, c_out = node.in_shapes[0][-1] if node.in_shapes[0] else None, node.out_shape[-1] if node.out_shape else None
    return c_in is not None and c_in == c_out


def analyze(nodes: Sequence[Node], outputs: Sequence[str]) -> Analysis:
    """Walk ``nodes`` (in topological order) and build the channel dependency analysis."""
    a = Analysis()
    for node in nodes:
        in_maps = [a.out_maps[i] for i in node.inputs]
        a.in_maps[node.name] = in_maps
        reason = unsupported_reason(node)
        if reason is not None:
            a.unknown[node.name] = reason
            a.out_maps[node.name] = _opaque(a, node, in_maps)
            continue
        a.out_maps[node.name] = _RULES.get(node.kind, _pass)(a, node, in_maps)
    for name in outputs:
        a.blocked.update(a.out_maps[name])
    return a


def _width(shape: Shape) -> int:
    last = shape[-1] if shape else None
    return int(last) if last is not None else 0


def _opaque(a: Analysis, node: Node, in_maps: list[list[int]]) -> list[int]:
    for m in in_maps:
        a.blocked.update(m)
    slots = a.uf.new(_width(node.out_shape))
    a.blocked.update(slots)
    return slots


def _input(a: Analysis, node: Node, _in_maps: list[list[int]]) -> list[int]:
    # The model's input channels are fixed by the data.
    slots = a.uf.new(_width(node.out_shape))
    a.blocked.update(slots)
    return slots


def _pass(_a: Analysis, _node: Node, in_maps: list[list[int]]) -> list[int]:
    return list(in_maps[0])


def _producer(a: Analysis, node: Node, _in_maps: list[list[int]]) -> list[int]:
    slots = a.uf.new(_width(node.out_shape))
    a.producers[node.name] = slots
    return slots


def _depthwise(_a: Analysis, node: Node, in_maps: list[list[int]]) -> list[int]:
    m = int(node.config.get("depth_multiplier", 1))
    return [s for s in in_maps[0] for _ in range(m)]


def _merge(a: Analysis, node: Node, in_maps: list[list[int]]) -> list[int]:
    first = in_maps[0]
    if any(len(m) != len(first) for m in in_maps):
        # Broadcasting merge: positions do not line up, so nothing here may be removed.
        a.unknown[node.name] = f"{node.kind} of inputs with different channel counts"
        return _opaque(a, node, in_maps)
    for m in in_maps[1:]:
        for x, y in zip(first, m, strict=True):
            a.uf.union(x, y)
    return list(first)


def _concat(_a: Analysis, _node: Node, in_maps: list[list[int]]) -> list[int]:
    return [s for m in in_maps for s in m]


def _flatten(_a: Analysis, node: Node, in_maps: list[list[int]]) -> list[int]:
    # channels_last flatten: flat index = position * C + channel.
    spatial = 1
    for d in node.in_shapes[0][1:-1]:
        spatial *= int(d or 1)
    return list(in_maps[0]) * spatial


_RULES: dict[str, Callable[[Analysis, Node, list[list[int]]], list[int]]] = {
    **{k: _producer for k in PRODUCERS},
    **{k: _depthwise for k in DEPTHWISE},
    **{k: _merge for k in MERGES},
    "Concatenate": _concat,
    "Flatten": _flatten,
    "InputLayer": _input,
}


def kept_positions(slot_map: Sequence[int], removed: set[int], a: Analysis) -> list[int]:
    """Positions of ``slot_map`` whose unit survives."""
    return [i for i, s in enumerate(slot_map) if a.unit(s) not in removed]


# --- reading a live Keras model ----------------------------------------------------


def nodes_from_keras(model: KerasModel) -> tuple[list[Node], list[str]]:
    """The layers of a built Sequential or functional model as nodes, and the output names."""
    cfg = model.get_config()
    layers = cfg["layers"]
    sequential = all("inbound_nodes" not in layer for layer in layers)
    nodes: list[Node] = []
    prev: str | None = None
    for lc in layers:
        name = lc["config"]["name"] if sequential else lc["name"]
        kind = lc["class_name"]
        layer = None if kind == "InputLayer" else model.get_layer(name)
        if sequential:
            inputs: tuple[str, ...] = () if prev is None else (prev,)
        else:
            inbound = lc.get("inbound_nodes", [])
            inputs = tuple(_history_names(inbound))
            if len(inbound) > 1:  # a layer called twice: its channels cannot be cut per call
                kind = f"shared layer {kind}"
        in_shapes, out_shape = _shapes(layer, lc)
        nodes.append(Node(name, kind, lc["config"], inputs, in_shapes, out_shape))
        prev = name
    outputs = [nodes[-1].name] if sequential else [o[0] for o in _output_list(cfg["output_layers"])]
    return nodes, outputs


def _output_list(spec: Any) -> list[list[Any]]:
    if spec and isinstance(spec[0], str):
        return [spec]
    return list(spec)


def _history_names(obj: Any) -> list[str]:
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            return [obj["config"]["keras_history"][0]]
        return [n for v in obj.values() for n in _history_names(v)]
    if isinstance(obj, list | tuple):
        return [n for v in obj for n in _history_names(v)]
    return []


def _shapes(layer: Any, lc: Mapping[str, Any]) -> tuple[tuple[Shape, ...], Shape]:
    if layer is None:  # an InputLayer: its shape is in the config
        shape = tuple(lc["config"]["batch_shape"])
        return (), shape
    ins = layer.input if isinstance(layer.input, list | tuple) else [layer.input]
    in_shapes = tuple(tuple(t.shape) for t in ins)
    out = layer.output
    out_shape = tuple((out[0] if isinstance(out, list | tuple) else out).shape)
    return in_shapes, out_shape
