"""Weight sharing for ONNX: palettized weights (uint8 indices plus a float codebook).

Each large Conv/Gemm/MatMul weight is clustered by k-means and stored as a uint8 index
tensor and a K-entry codebook; a ``Gather(codebook, indices)`` node rebuilds the weight,
so any ONNX Runtime runs the file (it folds Cast and Gather once at session start). The file
holds one byte per weight instead of four, and the indices compress well.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from device_agent.errors import EdgeError
from edge_sdk.core.kmeans import KMeansInit, check_clusters, kmeans_1d
from edge_sdk.model.kind import OnnxModel
from edge_sdk.passes.base import PassContext, PassOutcome

_WEIGHTED = {"Conv", "ConvTranspose", "Gemm", "MatMul"}


@dataclass(frozen=True, kw_only=True)
class OnnxShareConfig:
    """Cluster count, initialization and the smallest weight worth palettizing."""

    clusters: int = 16
    init: KMeansInit = KMeansInit.LINEAR
    min_size: int = 256  # smaller weights are not worth a Gather node

    def __post_init__(self) -> None:
        check_clusters(self.clusters, "--share")


@dataclass
class OnnxSharePass:
    """Palettize the weights of Conv/Gemm/MatMul nodes into K shared values."""

    config: OnnxShareConfig = field(default_factory=OnnxShareConfig)
    name: str = "share_onnx"

    def apply(self, model: OnnxModel, ctx: PassContext) -> PassOutcome:
        """A copy of ``model`` with large weights stored as uint8 indices into a codebook."""
        import onnx
        from onnx import helper, numpy_helper

        m = onnx.ModelProto()
        m.CopyFrom(model)
        names = _weight_names(m, self.config.min_size)
        if not names:
            raise EdgeError(
                f"share_onnx: no Conv/Gemm/MatMul weight with at least {self.config.min_size} values"
            )
        inits = {t.name: t for t in m.graph.initializer}
        gathers = []
        for i, name in enumerate(names):
            ctx.progress("share_onnx: clustering", i, len(names))
            w = numpy_helper.to_array(inits[name])
            book = kmeans_1d(w, self.config.clusters, init=self.config.init, seed=ctx.seed)
            m.graph.initializer.remove(inits[name])
            m.graph.initializer.extend([
                numpy_helper.from_array(book.labels.astype(np.uint8), f"{name}__indices"),
                numpy_helper.from_array(book.centroids.astype(np.float32), f"{name}__codebook"),
            ])
            # Gather takes int32/int64 indices only: the file stores uint8, a Cast widens them.
            gathers.append(helper.make_node(
                "Cast", [f"{name}__indices"], [f"{name}__indices32"], name=f"{name}__widen",
                to=onnx.TensorProto.INT32,
            ))
            gathers.append(helper.make_node(
                "Gather", [f"{name}__codebook", f"{name}__indices32"], [name], name=f"{name}__palette", axis=0
            ))
        for g in reversed(gathers):
            m.graph.node.insert(0, g)
        onnx.checker.check_model(m)
        changes: dict[str, float | int | str] = {
            "palettized_weights": len(names), "clusters": self.config.clusters,
            "bytes_before": model.ByteSize(), "bytes_after": m.ByteSize(),
        }
        return PassOutcome(model=m, changes=changes)


def _weight_names(model: OnnxModel, min_size: int) -> list[str]:
    sizes = {t.name: int(np.prod(t.dims)) for t in model.graph.initializer}
    floats = {t.name for t in model.graph.initializer if t.data_type == 1}  # FLOAT
    out: list[str] = []
    for n in model.graph.node:
        if n.op_type in _WEIGHTED and len(n.input) > 1:
            w = n.input[1]
            if w in floats and sizes[w] >= min_size and w not in out:
                out.append(w)
    return out
