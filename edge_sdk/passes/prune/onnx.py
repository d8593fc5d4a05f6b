"""Post-training channel pruning of ONNX models, with least-squares reconstruction.

For each channel group (read off the shared channel analysis by
:mod:`edge_sdk.passes.prune.onnx_graph`: one producer and its consumer, or every producer and
consumer tied by a residual Add, or one Concat input with its slice of the consumers), in
graph order: run the model as pruned so far on the calibration data,
rank the group's channels by their share of each consumer's output energy (summed over
the consumers), remove the lowest ``ratio`` of them from every producer and per-channel
op, and refit every consumer so that, on its remaining input channels, it reproduces what
the *original* model's consumer produced (:mod:`edge_sdk.core.least_squares`). No retraining.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from device_agent.errors import EdgeError
from edge_sdk.core.criteria import CRITERIA, ChannelCriterion, CriterionKind, Evidence, EvidenceKind
from edge_sdk.core.least_squares import ConvGeometry, column_energy, im2col, refit, sample_rows
from edge_sdk.model.data import Dataset, fit_to_shape
from edge_sdk.model.kind import OnnxModel
from edge_sdk.passes.base import PassContext, PassOutcome
from edge_sdk.passes.prune.keras import check_ratio
from edge_sdk.passes.prune.onnx_graph import ChannelGroups, GraphIndex, Group, Use, find_groups, with_node_names

if TYPE_CHECKING:
    from onnx import NodeProto


@dataclass(frozen=True, kw_only=True)
class OnnxPruneConfig:
    """Ratio, calibration samples and least-squares budget of post-training ONNX pruning."""

    ratio: float = 0.3
    samples: int = 512  # calibration samples used
    max_rows: int = 20000  # least-squares rows (positions × samples) per layer
    reconstruct: bool = True  # False: only slice the next layer (for comparison)
    criterion: CriterionKind = CriterionKind.ENERGY  # scores each consumer's evidence

    def __post_init__(self) -> None:
        check_ratio(self.ratio, "--prune")
        if self.samples < 1:
            raise EdgeError(f"prune_onnx: samples must be >= 1, got {self.samples}")


@dataclass
class OnnxPrunePass:
    """Remove channels of ONNX Conv/Gemm/MatMul groups and refit the layers that read them."""

    config: OnnxPruneConfig = field(default_factory=OnnxPruneConfig)
    name: str = "prune_onnx"

    def apply(self, model: OnnxModel, ctx: PassContext) -> PassOutcome:
        """A copy of ``model`` with each group's weakest channels cut and the consumers refitted."""
        import onnx

        original = with_node_names(model)
        groups, skipped = find_groups(original)
        if not groups:
            raise EdgeError(
                "prune_onnx: no prunable Conv/Gemm/MatMul chain in the model"
                + (f" ({'; '.join(skipped)})" if skipped else "")
            )
        x = _calibration(original, ctx.calibration, self.config.samples)
        current = onnx.ModelProto()
        current.CopyFrom(original)
        kept_out: dict[str, list[int]] = {}  # producer → its original output channels still there
        removed = 0
        for i, group in enumerate(groups):
            ctx.progress("prune_onnx: groups", i, len(groups))
            removed += self._prune_group(original, current, group.producers[0], x, kept_out)
        ctx.progress("prune_onnx: groups", len(groups), len(groups))
        onnx.checker.check_model(current)
        before, after = _params(original), _params(current)
        changes: dict[str, float | int | str] = {
            "chains": len(groups), "channels": sum(g.channels for g in groups),
            "channels_removed": removed, "params_before": before, "params_after": after,
            "residual_groups": sum(1 for g in groups if _has_join(original, g, "Add")),
            "concat_groups": sum(1 for g in groups if _has_join(original, g, "Concat")),
        }
        notes = tuple(f"not pruned: {s}" for s in skipped)
        return PassOutcome(model=current, changes=changes, notes=notes)

    def _prune_group(
        self, original: OnnxModel, current: OnnxModel, seed: str, x: np.ndarray, kept_out: dict[str, list[int]]
    ) -> int:
        ix_o, ix_c = GraphIndex(original), GraphIndex(current)
        group, why = ChannelGroups(ix_c).of(seed)
        if group is None:  # cutting earlier groups cannot break a group; guard anyway
            raise EdgeError(f"prune_onnx: group of {seed} no longer traceable after earlier cuts: {why}")
        n = group.channels
        k = min(int(np.floor(self.config.ratio * n + 1e-9)), n - 1)
        if k == 0:
            return 0
        fits = [self._use_fit(original, current, ix_o, ix_c, u, x, kept_out) for u in group.uses]
        criterion = CRITERIA[self.config.criterion]
        importance = _scores(criterion, [f.evidence(n) for f in fits], n)
        drop = sorted(np.argsort(importance, kind="stable")[:k].tolist())
        keep = [c for c in range(n) if c not in set(drop)]
        # Cut first: a consumer that is also one of the group's producers (the conv of x + conv(x))
        # is then refit to its kept outputs only.
        _cut_group(ix_c, group, drop)
        for f in fits:
            f.apply(ix_c, drop, self.config.reconstruct, keep if f.use.node in group.producers else None)
        for p in group.producers:
            prev = kept_out.get(p, list(range(n)))
            kept_out[p] = [prev[c] for c in keep]
        return k

    def _use_fit(
        self, original: OnnxModel, current: OnnxModel, ix_o: GraphIndex, ix_c: GraphIndex, use: Use,
        x: np.ndarray, kept_out: dict[str, list[int]],
    ) -> _UseFit:
        cons_o, cons_c = ix_o.nodes[use.node], ix_c.nodes[use.node]
        x_orig = _activation(original, cons_o.input[0], x)
        x_new = _activation(current, cons_c.input[0], x)
        layer = _Linear.of(ix_o, cons_o)
        cols_o = layer.columns(x_orig)
        rows = sample_rows(len(cols_o), self.config.max_rows)
        target = cols_o[rows] @ layer.matrix + layer.bias
        if use.node in kept_out:  # its own output channels were cut by an earlier group
            target = target[:, kept_out[use.node]]
        cur = _Linear.of(ix_c, cons_c)
        cols = cur.columns(x_new)[rows]
        return _UseFit(use, cur, cols, target)


@dataclass(frozen=True)
class _UseFit:
    """One consumer of a group: its current columns and the original output to refit to."""

    use: Use
    layer: _Linear
    cols: np.ndarray
    target: np.ndarray

    def evidence(self, n: int) -> Evidence:
        """Each group channel's share of this consumer's output energy (sums to ≤ 1)."""
        energy = column_energy(self.cols, self.layer.matrix)
        per = np.array([energy[self.layer.columns_of(self.use, [c])].sum() for c in range(n)])
        share = per / max(float(energy.sum()), 1e-12)
        return Evidence(EvidenceKind.CONSUMER_ENERGY, self.use.node, share[:, None])

    def apply(self, ix: GraphIndex, drop: list[int], reconstruct: bool, outputs: list[int] | None) -> None:
        """Store this consumer without the inputs of channels ``drop``, refit or sliced; with
        only its ``outputs`` when the group cuts those too."""
        gone = set(self.layer.columns_of(self.use, drop))
        kept = [i for i in range(self.cols.shape[1]) if i not in gone]
        cur = self.layer
        out = slice(None) if outputs is None else outputs
        if reconstruct:
            w, b = refit(self.cols[:, kept], self.target[:, out])
        else:
            w = cur.matrix[kept][:, out]
            b = np.zeros_like(cur.bias[out]) if cur.node.op_type == "MatMul" else cur.bias[out]
        cur.store(ix, w, b)


@dataclass(frozen=True)
class _Linear:
    """A consumer seen as a matrix product on input columns (im2col for a Conv)."""

    node: NodeProto
    matrix: np.ndarray  # (input columns, outputs)
    bias: np.ndarray
    geometry: ConvGeometry | None

    @staticmethod
    def of(ix: GraphIndex, node: NodeProto) -> _Linear:
        w = ix.arrays[node.input[1]]
        bias_name = node.input[2] if len(node.input) > 2 else ""
        if node.op_type == "Conv":
            m = w.reshape(w.shape[0], -1).T
            pads = tuple(ix.attr(node, "pads", [0, 0, 0, 0]))
            geo = ConvGeometry(
                kernel=(int(w.shape[2]), int(w.shape[3])),
                strides=tuple(ix.attr(node, "strides", [1, 1])),  # type: ignore[arg-type]
                pads=(pads[0], pads[1], pads[2], pads[3]),
                dilations=tuple(ix.attr(node, "dilations", [1, 1])),  # type: ignore[arg-type]
            )
        else:
            trans = node.op_type == "Gemm" and ix.attr(node, "transB", 0)
            m, geo = (w.T if trans else w), None
        bias = ix.arrays[bias_name] if bias_name in ix.arrays else np.zeros(m.shape[1], np.float32)
        return _Linear(node, m.astype(np.float64), bias.astype(np.float64).reshape(-1), geo)

    def columns(self, x: np.ndarray) -> np.ndarray:
        if self.geometry is None:
            return x.reshape(len(x), -1)
        return im2col(x, self.geometry)

    def columns_of(self, use: Use, channels: list[int]) -> list[int]:
        """The matrix rows (input columns) that read the given group channels."""
        if self.geometry is None:
            return use.positions(channels)
        per = self.geometry.kernel[0] * self.geometry.kernel[1]
        return [c * per + j for c in use.positions(channels) for j in range(per)]

    def store(self, ix: GraphIndex, w: np.ndarray, b: np.ndarray) -> None:
        from onnx import numpy_helper

        node = self.node
        old = ix.arrays[node.input[1]]
        if node.op_type == "Conv":
            new = w.T.reshape(old.shape[0], -1, old.shape[2], old.shape[3])
        elif node.op_type == "Gemm" and ix.attr(node, "transB", 0):
            new = w.T
        else:
            new = w
        ix.inits[node.input[1]].CopyFrom(numpy_helper.from_array(new.astype(np.float32), node.input[1]))
        _set_bias(ix, node, b.astype(np.float32))


def _set_bias(ix: GraphIndex, node: NodeProto, b: np.ndarray) -> None:
    from onnx import numpy_helper

    if node.op_type == "MatMul":
        # MatMul has no bias input: the fitted bias goes in an Add right after it.
        _add_bias_after(ix, node, b)
        return
    if len(node.input) > 2 and node.input[2] in ix.inits:
        ix.inits[node.input[2]].CopyFrom(numpy_helper.from_array(b, node.input[2]))
        return
    name = f"{node.name}_refit_bias"
    ix.model.graph.initializer.append(numpy_helper.from_array(b, name))
    while len(node.input) < 2:
        node.input.append("")
    if len(node.input) == 2:
        node.input.append(name)
    else:
        node.input[2] = name


def _add_bias_after(ix: GraphIndex, node: NodeProto, b: np.ndarray) -> None:
    from onnx import helper, numpy_helper

    out = node.output[0]
    users = ix.consumers.get(out, [])
    if len(users) == 1 and users[0].op_type == "Add" and len(users[0].input) > 1:
        bias = users[0].input[1]
        if bias in ix.arrays and ix.arrays[bias].size == b.size and ix.single_use(bias):
            total = (ix.arrays[bias].reshape(-1) + b).reshape(ix.arrays[bias].shape)
            ix.inits[bias].CopyFrom(numpy_helper.from_array(total.astype(np.float32), bias))
            return
    mid = f"{node.name}_refit_out"
    ix.model.graph.initializer.append(numpy_helper.from_array(b, f"{node.name}_refit_bias"))
    for c in ix.consumers.get(out, []):
        for i, name in enumerate(c.input):
            if name == out:
                c.input[i] = mid
    graph = ix.model.graph
    add = helper.make_node("Add", [mid, f"{node.name}_refit_bias"], [out], name=f"{node.name}_refit_add")
    node.output[0] = mid
    pos = list(graph.node).index(node)
    graph.node.insert(pos + 1, add)


def _cut_group(ix: GraphIndex, group: Group, drop: list[int]) -> None:
    """Remove the dropped channels from every producer and per-channel op of the group."""
    from onnx import numpy_helper

    def cut(name: str, axis: int, offset: int = 0) -> None:
        arr = ix.arrays[name]
        gone = {offset + c for c in drop}
        arr = np.take(arr, [i for i in range(arr.shape[axis]) if i not in gone], axis=axis)
        ix.inits[name].CopyFrom(numpy_helper.from_array(arr, name))
        ix.arrays[name] = arr

    n = group.channels
    for name in group.producers:
        p = ix.nodes[name]
        trans = p.op_type == "Gemm" and ix.attr(p, "transB", 0)
        cut(p.input[1], 0 if p.op_type == "Conv" or trans else 1)
        if len(p.input) > 2 and p.input[2] in ix.arrays and ix.arrays[p.input[2]].size == n:
            cut(p.input[2], 0)
    for name, off in group.middle:
        m = ix.nodes[name]
        if m.op_type == "Conv":  # depthwise: one filter per kept channel
            cut(m.input[1], 0, off)
            if len(m.input) > 2 and m.input[2] in ix.arrays:
                cut(m.input[2], 0, off)
            _set_group(m, int(ix.arrays[m.input[1]].shape[0]))
            continue
        params = m.input[1:5] if m.op_type == "BatchNormalization" else m.input[1:2]
        for t in params:
            if t in ix.arrays and ix.arrays[t].size > 1 and t in ix.inits:
                cut(t, 0 if ix.arrays[t].ndim <= 1 else _channel_axis(ix.arrays[t]), off)


def _scores(criterion: ChannelCriterion, evidence: list[Evidence], n: int) -> np.ndarray:
    """The criterion's scores summed over the group's consumers."""
    scores = [s for e in evidence if (s := criterion.score(e)) is not None]
    if not scores:
        raise EdgeError(f"prune_onnx: criterion {criterion.name!r} does not score what the ONNX pass "
                        "measures (each consumer's output energy); use energy")
    total: np.ndarray = sum(scores, np.zeros(n))
    return total


def _channel_axis(arr: np.ndarray) -> int:
    """A bias broadcast against NCHW (C,1,1) or (1,C,1,1) / (1,C): its one non-1 axis."""
    return int(next(i for i, d in enumerate(arr.shape) if d > 1))


def _has_join(model: OnnxModel, group: Group, op: str) -> bool:
    types = {n.name: n.op_type for n in model.graph.node}
    return any(types[j] == op for j in group.joins)


def _set_group(node: NodeProto, group: int) -> None:
    for a in node.attribute:
        if a.name == "group":
            a.i = group


def _input_shape(model: OnnxModel) -> tuple[int, ...]:
    inits = {t.name for t in model.graph.initializer}
    inp = next(i for i in model.graph.input if i.name not in inits)
    return tuple(int(d.dim_value) if d.HasField("dim_value") else -1 for d in inp.type.tensor_type.shape.dim)


def _calibration(model: OnnxModel, ds: Dataset, samples: int) -> np.ndarray:
    return fit_to_shape(ds.take(samples), _input_shape(model), what="ONNX model").x


def _activation(model: OnnxModel, tensor: str, x: np.ndarray) -> np.ndarray:
    import onnx
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.graph.output[:]
    m.graph.output.append(onnx.helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i : i + 256]})[0] for i in range(0, len(x), 256)])


def _params(model: OnnxModel) -> int:
    return int(sum(np.prod(t.dims) for t in model.graph.initializer))
