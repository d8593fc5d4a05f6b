"""Post-training channel pruning of ONNX models, with least-squares reconstruction.

For each prunable chain (:mod:`edge_sdk.pruning.onnx_graph`), in graph order: run the
model as pruned so far on the calibration data, rank the producer's channels by their
contribution to the consumer's output, remove the lowest ``ratio`` of them, and refit
the consumer so that, on the remaining channels, it reproduces what the *original*
model's consumer produced (:mod:`edge_sdk.compress.reconstruct`). No retraining.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from device_agent.errors import EdgeError
from edge_sdk.compress.reconstruct import ConvGeometry, column_energy, im2col, refit, sample_rows
from edge_sdk.data import Dataset, fit_to_shape
from edge_sdk.passes.base import PassContext, PassOutcome
from edge_sdk.passes.prune import check_ratio
from edge_sdk.pruning.onnx_graph import Chain, GraphIndex, find_chains, with_node_names


@dataclass(frozen=True, kw_only=True)
class OnnxPruneConfig:
    ratio: float = 0.3
    samples: int = 512  # calibration samples used
    max_rows: int = 20000  # least-squares rows (positions × samples) per layer
    reconstruct: bool = True  # False: only slice the next layer (for comparison)

    def __post_init__(self) -> None:
        check_ratio(self.ratio, "--prune")
        if self.samples < 1:
            raise EdgeError(f"prune_onnx: samples must be >= 1, got {self.samples}")


@dataclass
class OnnxPrunePass:
    """Remove channels of ONNX Conv/Gemm/MatMul chains and refit the next layer."""

    config: OnnxPruneConfig = field(default_factory=OnnxPruneConfig)
    name: str = "prune_onnx"

    def apply(self, model: Any, ctx: PassContext) -> PassOutcome:
        import onnx

        original = with_node_names(model)
        chains, skipped = find_chains(original)
        if not chains:
            raise EdgeError(
                "prune_onnx: no prunable Conv/Gemm/MatMul chain in the model"
                + (f" ({'; '.join(skipped)})" if skipped else "")
            )
        x = _calibration(original, ctx.calibration, self.config.samples)
        current = onnx.ModelProto()
        current.CopyFrom(original)
        removed = 0
        for i, chain in enumerate(chains):
            ctx.progress("prune_onnx: chains", i, len(chains))
            removed += self._prune_chain(original, current, chain, x)
        ctx.progress("prune_onnx: chains", len(chains), len(chains))
        onnx.checker.check_model(current)
        before, after = _params(original), _params(current)
        changes: dict[str, float | int | str] = {
            "chains": len(chains), "channels": sum(c.channels for c in chains),
            "channels_removed": removed, "params_before": before, "params_after": after,
        }
        notes = tuple(f"not pruned: {s}" for s in skipped)
        return PassOutcome(model=current, changes=changes, notes=notes)

    def _prune_chain(self, original: Any, current: Any, chain: Chain, x: np.ndarray) -> int:
        k = min(int(np.floor(self.config.ratio * chain.channels + 1e-9)), chain.channels - 1)
        if k == 0:
            return 0
        ix_o, ix_c = GraphIndex(original), GraphIndex(current)
        cons_o, cons_c = ix_o.nodes[chain.consumer], ix_c.nodes[chain.consumer]
        x_orig = _activation(original, cons_o.input[0], x)
        x_new = _activation(current, cons_c.input[0], x)
        layer = _Linear.of(ix_o, cons_o)
        rows = sample_rows(len(layer.columns(x_orig)), self.config.max_rows)
        target = layer.columns(x_orig)[rows] @ layer.matrix + layer.bias
        cur = _Linear.of(ix_c, cons_c)
        cols = cur.columns(x_new)[rows]
        energy = column_energy(cols, cur.matrix)
        per_channel = energy.reshape(chain.channels, -1).sum(axis=1)
        keep = sorted(np.argsort(per_channel, kind="stable")[k:].tolist())
        kept_cols = cur.kept_columns(chain, keep)
        if self.config.reconstruct:
            w, b = refit(cols[:, kept_cols], target)
        else:
            w, b = cur.matrix[kept_cols], np.zeros_like(cur.bias) if cur.node.op_type == "MatMul" else cur.bias
        _cut_producer_side(ix_c, chain, keep)
        cur.store(ix_c, w, b, len(keep) * chain.spatial)
        return k


@dataclass(frozen=True)
class _Linear:
    """A consumer seen as a matrix product on input columns (im2col for a Conv)."""

    node: Any
    matrix: np.ndarray  # (input columns, outputs)
    bias: np.ndarray
    geometry: ConvGeometry | None

    @staticmethod
    def of(ix: GraphIndex, node: Any) -> _Linear:
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

    def kept_columns(self, chain: Chain, keep: list[int]) -> list[int]:
        if self.geometry is None:
            return chain.positions(keep)
        per = self.geometry.kernel[0] * self.geometry.kernel[1]
        return [c * per + j for c in keep for j in range(per)]

    def store(self, ix: GraphIndex, w: np.ndarray, b: np.ndarray, n_in: int) -> None:
        from onnx import numpy_helper

        node = self.node
        old = ix.arrays[node.input[1]]
        if node.op_type == "Conv":
            new = w.T.reshape(old.shape[0], n_in, old.shape[2], old.shape[3])
        elif node.op_type == "Gemm" and ix.attr(node, "transB", 0):
            new = w.T
        else:
            new = w
        ix.inits[node.input[1]].CopyFrom(numpy_helper.from_array(new.astype(np.float32), node.input[1]))
        _set_bias(ix, node, b.astype(np.float32))


def _set_bias(ix: GraphIndex, node: Any, b: np.ndarray) -> None:
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


def _add_bias_after(ix: GraphIndex, node: Any, b: np.ndarray) -> None:
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


def _cut_producer_side(ix: GraphIndex, chain: Chain, keep: list[int]) -> None:
    from onnx import numpy_helper

    def cut(name: str, axis: int) -> None:
        arr = np.take(ix.arrays[name], keep, axis=axis)
        ix.inits[name].CopyFrom(numpy_helper.from_array(arr, name))

    p = ix.nodes[chain.producer]
    trans = p.op_type == "Gemm" and ix.attr(p, "transB", 0)
    cut(p.input[1], 0 if p.op_type == "Conv" or trans else 1)
    if len(p.input) > 2 and p.input[2] in ix.arrays and ix.arrays[p.input[2]].size == chain.channels:
        cut(p.input[2], 0)
    refit_bias = f"{p.name}_refit_bias"  # an Add inserted after a refit MatMul
    if p.op_type == "MatMul" and refit_bias in ix.arrays:
        cut(refit_bias, 0)
    for name in chain.middle:
        m = ix.nodes[name]
        if m.op_type == "Conv":  # depthwise: one filter per kept channel
            cut(m.input[1], 0)
            if len(m.input) > 2 and m.input[2] in ix.arrays:
                cut(m.input[2], 0)
            _set_group(m, len(keep))
            continue
        params = m.input[1:5] if m.op_type == "BatchNormalization" else m.input[1:2]
        for t in params:
            if t in ix.arrays and ix.arrays[t].size == chain.channels:
                cut(t, 0)


def _set_group(node: Any, group: int) -> None:
    for a in node.attribute:
        if a.name == "group":
            a.i = group


def _input_shape(model: Any) -> tuple[int, ...]:
    inits = {t.name for t in model.graph.initializer}
    inp = next(i for i in model.graph.input if i.name not in inits)
    return tuple(int(d.dim_value) if d.HasField("dim_value") else -1 for d in inp.type.tensor_type.shape.dim)


def _calibration(model: Any, ds: Dataset, samples: int) -> np.ndarray:
    return fit_to_shape(ds.take(samples), _input_shape(model), what="ONNX model").x


def _activation(model: Any, tensor: str, x: np.ndarray) -> np.ndarray:
    import onnx
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.graph.output[:]
    m.graph.output.append(onnx.helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i : i + 256]})[0] for i in range(0, len(x), 256)])


def _params(model: Any) -> int:
    return int(sum(np.prod(t.dims) for t in model.graph.initializer))
