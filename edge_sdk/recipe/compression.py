"""The compression steps of a recipe, built from the ``edge optimize`` flags.

Order (fixed, documented): prune → low-rank → distill → share. Distillation recovers
what pruning and factorization cost, and comes before sharing because training every
weight freely would undo the clusters (sharing fine-tunes its own centroids). The ONNX
(post-training) path has prune (with reconstruction) → share (palettized weights).
"""

from __future__ import annotations

from dataclasses import dataclass

from device_agent.errors import EdgeError
from edge_sdk.model.kind import Model, ModelKind
from edge_sdk.passes.base import GraphPass, PassContext, PassOutcome
from edge_sdk.passes.distill.keras import DistillConfig, DistillPass
from edge_sdk.passes.lowrank.keras import LowRankConfig, LowRankPass
from edge_sdk.passes.prune.keras import PruneConfig, PrunePass
from edge_sdk.passes.prune.onnx import OnnxPruneConfig, OnnxPrunePass
from edge_sdk.passes.share.keras import ShareConfig, SharePass
from edge_sdk.passes.share.onnx import OnnxShareConfig, OnnxSharePass


@dataclass(frozen=True, kw_only=True)
class CompressionFlags:
    """``--prune RATIO``, ``--share K``, ``--lowrank ENERGY``, ``--distill``."""

    prune: float | None = None
    share: int | None = None
    lowrank: float | None = None
    distill: bool = False


def keras_passes(flags: CompressionFlags) -> list[GraphPass]:
    """The Keras (trainable) path's compression passes, in recipe order."""
    passes: list[GraphPass] = []
    if flags.prune is not None:
        passes.append(PrunePass(PruneConfig(ratio=flags.prune)))
    if flags.lowrank is not None:
        passes.append(LowRankPass(LowRankConfig(energy=flags.lowrank)))
    if flags.distill:
        passes.append(DistillPass(DistillConfig()))
    if flags.share is not None:
        passes.append(SharePass(ShareConfig(clusters=flags.share)))
    return passes


def onnx_passes(flags: CompressionFlags) -> list[GraphPass]:
    """The ONNX (post-training) path's compression passes, in recipe order."""
    if flags.lowrank is not None or flags.distill:
        raise EdgeError("--lowrank and --distill need a Keras model (the ONNX path is post-training)")
    passes: list[GraphPass] = []
    if flags.prune is not None:
        passes.append(OnnxPrunePass(OnnxPruneConfig(ratio=flags.prune)))
    if flags.share is not None:
        passes.append(OnnxSharePass(OnnxShareConfig(clusters=flags.share)))
    return passes


class ByModelKind:
    """One recipe step that runs the Keras or the ONNX pass, whichever fits the model."""

    def __init__(self, name: str, keras_pass: GraphPass, onnx_pass: GraphPass | None):
        self.name = name
        self._keras = keras_pass
        self._onnx = onnx_pass

    def apply(self, model: Model, ctx: PassContext) -> PassOutcome:
        """Run the Keras pass on a Keras model, the ONNX pass on an ONNX one (an error if there is none)."""
        if ModelKind.of(model) is ModelKind.KERAS:
            return self._keras.apply(model, ctx)
        if self._onnx is None:
            raise EdgeError(f"{self.name}: needs a Keras model (the ONNX path is post-training)")
        return self._onnx.apply(model, ctx)


def recipe_passes(flags: CompressionFlags) -> tuple[GraphPass, ...]:
    """The compression steps for a recipe that does not yet know the model's kind."""
    keras = {p.name: p for p in keras_passes(flags)}
    onnx: dict[str, GraphPass] = {}
    if flags.prune is not None:
        onnx["prune"] = OnnxPrunePass(OnnxPruneConfig(ratio=flags.prune))
    if flags.share is not None:
        onnx["share"] = OnnxSharePass(OnnxShareConfig(clusters=flags.share))
    return tuple(ByModelKind(name, p, onnx.get(name)) for name, p in keras.items())
