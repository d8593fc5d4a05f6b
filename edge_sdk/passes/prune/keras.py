"""Channel pruning of Keras models that removes channels (the model file gets smaller).

The dependency analysis (:mod:`edge_sdk.core.channel_graph`, on the nodes that
:mod:`edge_sdk.passes.prune.keras_graph` reads) finds which channels must go together; a
criterion (:mod:`edge_sdk.core.criteria`) ranks them; the model is rebuilt with the
surviving weights (:mod:`edge_sdk.passes.prune.keras_rebuild`). Layers the analysis does
not understand keep their channels, and the outcome's notes name them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from device_agent.errors import EdgeError
from edge_sdk.core.channel_graph import analyze
from edge_sdk.core.criteria import CRITERIA, CriterionKind
from edge_sdk.core.select import choose, unit_scores
from edge_sdk.model.analysis import keras_cost
from edge_sdk.model.kind import KerasModel
from edge_sdk.passes.base import PassContext, PassOutcome
from edge_sdk.passes.prune.keras_graph import nodes_from_keras
from edge_sdk.passes.prune.keras_rebuild import gather_evidence, rebuild


class PruneScope(str, Enum):
    """Whether the ratio applies to each group alone or to all channels of the model at once."""

    PER_LAYER = "per_layer"  # every group loses ``ratio`` of its channels
    GLOBAL = "global"  # ``ratio`` of all channels, lowest normalized scores first


def check_ratio(value: float, what: str) -> None:
    """Reject a prune ratio outside [0, 1) with an error naming ``what``."""
    if not 0.0 <= value < 1.0:
        raise EdgeError(f"{what}: prune ratio must be in [0, 1), got {value}")


@dataclass(frozen=True, kw_only=True)
class PruneConfig:
    """How much to prune (overall or per layer), by which criterion, within which scope."""

    ratio: float = 0.5
    criterion: CriterionKind = CriterionKind.L1
    scope: PruneScope = PruneScope.PER_LAYER
    layer_ratios: tuple[tuple[str, float], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        check_ratio(self.ratio, "--prune")
        for name, r in self.layer_ratios:
            check_ratio(r, f"prune ratio for layer {name!r}")


@dataclass
class PrunePass:
    """Remove the lowest-ranked channels of every prunable group and rebuild the model."""

    config: PruneConfig = field(default_factory=PruneConfig)
    name: str = "prune"

    def apply(self, model: KerasModel, ctx: PassContext) -> PassOutcome:
        """A smaller Keras model with the chosen channels gone; layers it could not analyse are noted."""
        if not hasattr(model, "get_config") or not hasattr(model, "layers"):
            raise EdgeError(f"prune: expected a Keras model, got {type(model).__name__}")
        ctx.progress("prune: analysing channels", 0, 3)
        nodes, outputs = nodes_from_keras(model)
        a = analyze(nodes, outputs)
        notes = tuple(
            f"layer {name!r} left unpruned with its neighbours: {why}" for name, why in a.unknown.items()
        )
        if not a.units():
            raise EdgeError(
                f"prune: model {model.name!r} has no prunable layer (needs Conv/Dense layers whose "
                f"channels feed known layers; not understood: {', '.join(a.unknown) or 'none'})"
            )
        _check_layer_names(self.config, model)
        ctx.progress("prune: ranking channels", 1, 3)
        scores = unit_scores(a, gather_evidence(model, a, nodes), CRITERIA[self.config.criterion])
        sel = choose(
            a, scores, ratio=self.config.ratio, layer_ratios=dict(self.config.layer_ratios),
            global_rank=self.config.scope is PruneScope.GLOBAL,
        )
        ctx.progress("prune: rebuilding", 2, 3)
        smaller = rebuild(model, a, nodes, set(sel.removed))
        ctx.progress("prune: done", 3, 3)
        before, after = keras_cost(model), keras_cost(smaller)
        changes: dict[str, float | int | str] = {
            "params_before": before.params, "params_after": after.params,
            "macs_before": before.macs, "macs_after": after.macs,
            "channel_units": sum(g.units for g in sel.groups),
            "channel_units_removed": len(sel.removed),
            "groups": len(sel.groups), "criterion": self.config.criterion.value,
        }
        return PassOutcome(model=smaller, changes=changes, notes=notes)


def _check_layer_names(config: PruneConfig, model: KerasModel) -> None:
    names = {layer.name for layer in model.layers}
    for name, _ in config.layer_ratios:
        if name not in names:
            raise EdgeError(f"prune: no layer named {name!r} in model {model.name!r}")
