"""Channel dependency analysis: which channels of a model must be removed together.

Pure and framework-neutral: it works on :class:`Node` records that say what each op does
to channels (its :class:`Role`), never on TensorFlow or ONNX objects. The adapters that
read a model into nodes live beside the passes that cut it
(:mod:`edge_sdk.passes.prune.keras_graph`, :mod:`edge_sdk.passes.prune.onnx_graph`).

Every channel a producer creates gets a *slot* id. An op's output is described by the
slot at each position of its channel axis (a *map*): pass-through ops copy their input's
map, a concat joins maps, a flatten tiles a map over the spatial positions in the order
its :class:`Layout` gives, a depthwise convolution repeats each slot ``multiplier``
times. An elementwise merge (a residual add; the multiply of a squeeze-and-excitation
block, whose excitation has the channels it scales) unites the slots at equal positions,
so both sides go together. Slots united this way form one *unit*: removing a unit removes
one output channel of each producer in it, the matching entries of every per-channel op
it passes and the matching input positions of every consumer. A unit that reaches the
model's input or output, enters an op the analysis does not understand, or is read as a
parameter is *blocked*; :class:`Why` records where.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Role(str, Enum):
    """What an op does to the channels it reads; the adapters decide it per framework."""

    INPUT = "input"  # the model's input: its channels are fixed by the data
    PRODUCER = "producer"  # makes new channels from all it reads (a Conv, a Dense/Gemm/MatMul)
    PASS = "pass"  # keeps each channel at its position (activations, pooling, batch norm, a bias)
    DEPTHWISE = "depthwise"  # one filter per input channel, ``multiplier`` outputs each
    MERGE = "merge"  # elementwise over equal-width inputs: equal positions go together
    CONCAT = "concat"  # its inputs' channels one after the other
    FLATTEN = "flatten"  # each channel tiled over ``spatial`` positions, ordered by ``layout``
    OPAQUE = "opaque"  # not understood: every channel it reads or makes stays


class Layout(str, Enum):
    """Where channel ``c`` at spatial position ``p`` lands when a flatten joins the axes."""

    CHANNELS_LAST = "channels_last"  # NHWC: flat index p·C + c (Keras)
    CHANNELS_FIRST = "channels_first"  # NCHW: flat index c·S + p (ONNX)


@dataclass(frozen=True)
class Node:
    """One op as the analysis sees it: its role, the ops it reads and the numbers its role needs."""

    name: str
    kind: str  # the framework's class or op type, for messages and the adapters' tables
    role: Role
    inputs: tuple[str, ...]  # the ops whose outputs it reads as data, in order
    channels: int = 0  # the width of its output's channel axis (what INPUT, PRODUCER, OPAQUE create)
    multiplier: int = 1  # DEPTHWISE: outputs per input channel
    spatial: int = 1  # FLATTEN: positions each channel is tiled over
    layout: Layout | None = None  # FLATTEN: the order of the flat axis; no default, each adapter says
    reason: str = ""  # OPAQUE: why the analysis cannot follow channels through it
    side_inputs: tuple[str, ...] = ()  # ops whose outputs it reads as parameters (a computed weight)
    config: Mapping[str, Any] = field(default_factory=dict)  # the framework's settings, for its adapter


class Cause(str, Enum):
    """How a blocked channel met what blocks it."""

    INPUT = "input"  # it is a channel of the model's input
    OUTPUT = "output"  # it reaches the model's output
    UNKNOWN = "unknown"  # an op the analysis does not understand reads it as data
    SIDE = "side"  # an op reads it as a parameter (a side input), not as data
    MADE = "made"  # an op the analysis does not understand makes it


@dataclass(frozen=True)
class Why:
    """Why a channel must stay: how it met the op ``node`` that keeps it."""

    cause: Cause
    node: str


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
    """The result: the slot map of every op's output and inputs, and what is blocked and why."""

    out_maps: dict[str, list[int]] = field(default_factory=dict)
    in_maps: dict[str, list[list[int]]] = field(default_factory=dict)
    producers: dict[str, list[int]] = field(default_factory=dict)  # slots each producer creates
    blocked: dict[int, Why] = field(default_factory=dict)  # slot -> the first reason found, in graph order
    unknown: dict[str, str] = field(default_factory=dict)  # op -> why it is not understood
    uf: _UnionFind = field(default_factory=_UnionFind)

    def block(self, slots: Sequence[int], why: Why) -> None:
        """Keep ``slots``; a slot already blocked keeps its first reason."""
        for s in slots:
            self.blocked.setdefault(s, why)

    def unit(self, slot: int) -> int:
        """The unit (root slot) a channel slot belongs to after all the joins."""
        return self.uf.find(slot)

    def blocked_units(self) -> set[int]:
        """Units that keep every channel: the model's inputs and outputs and what touches an unknown op."""
        return {self.unit(s) for s in self.blocked}

    def why(self, units: Collection[int]) -> Why | None:
        """The first reason found (in graph order) that blocks one of ``units``, or None."""
        return next((w for s, w in self.blocked.items() if self.unit(s) in units), None)

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


def analyze(nodes: Sequence[Node], outputs: Sequence[str]) -> Analysis:
    """Walk ``nodes`` (in topological order) and build the channel dependency analysis;
    ``outputs`` names the ops whose outputs leave the model."""
    a = Analysis()
    leaves = set(outputs)
    for node in nodes:
        in_maps = [a.out_maps[i] for i in node.inputs]
        a.in_maps[node.name] = in_maps
        a.out_maps[node.name] = _RULES[node.role](a, node, in_maps)
        for side in node.side_inputs:
            a.block(a.out_maps[side], Why(Cause.SIDE, node.name))
        if node.name in leaves:
            a.block(a.out_maps[node.name], Why(Cause.OUTPUT, node.name))
    return a


def _opaque(a: Analysis, node: Node, in_maps: list[list[int]]) -> list[int]:
    a.unknown.setdefault(node.name, node.reason)
    for m in in_maps:
        a.block(m, Why(Cause.UNKNOWN, node.name))
    slots = a.uf.new(node.channels)
    a.block(slots, Why(Cause.MADE, node.name))
    return slots


def _input(a: Analysis, node: Node, _in_maps: list[list[int]]) -> list[int]:
    slots = a.uf.new(node.channels)
    a.block(slots, Why(Cause.INPUT, node.name))
    return slots


def _pass(_a: Analysis, _node: Node, in_maps: list[list[int]]) -> list[int]:
    return list(in_maps[0])


def _producer(a: Analysis, node: Node, _in_maps: list[list[int]]) -> list[int]:
    slots = a.uf.new(node.channels)
    a.producers[node.name] = slots
    return slots


def _depthwise(_a: Analysis, node: Node, in_maps: list[list[int]]) -> list[int]:
    return [s for s in in_maps[0] for _ in range(node.multiplier)]


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
    if node.layout is Layout.CHANNELS_FIRST:
        return [s for s in in_maps[0] for _ in range(node.spatial)]
    if node.layout is Layout.CHANNELS_LAST:
        return list(in_maps[0]) * node.spatial
    raise ValueError(f"flatten {node.name!r} has no layout: the adapter must say where channels land")


_RULES: dict[Role, Callable[[Analysis, Node, list[list[int]]], list[int]]] = {
    Role.INPUT: _input,
    Role.PRODUCER: _producer,
    Role.PASS: _pass,
    Role.DEPTHWISE: _depthwise,
    Role.MERGE: _merge,
    Role.CONCAT: _concat,
    Role.FLATTEN: _flatten,
    Role.OPAQUE: _opaque,
}


def kept_positions(slot_map: Sequence[int], removed: set[int], a: Analysis) -> list[int]:
    """Positions of ``slot_map`` whose unit survives."""
    return [i for i, s in enumerate(slot_map) if a.unit(s) not in removed]
