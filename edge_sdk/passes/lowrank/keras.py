"""Low-rank factorization: a Dense or 1×1 Conv layer becomes two thinner ones (truncated SVD).

The first new layer (``NAME_lowrank``, no bias, linear) projects to the rank; the second
keeps the original layer's name, bias and activation, so everything downstream is
unchanged. A layer is factorized only when the two factors hold fewer weights.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from device_agent.errors import EdgeError
from edge_sdk.core.svd import factorize, rank_for_budget, rank_for_energy, saves
from edge_sdk.model.analysis import keras_cost
from edge_sdk.model.kind import KerasModel
from edge_sdk.passes.base import PassContext, PassOutcome


@dataclass(frozen=True, kw_only=True)
class LowRankConfig:
    """Exactly one of ``energy`` (fraction of squared singular values kept) or
    ``param_budget`` (fraction of each layer's weights the two factors may hold)."""

    energy: float | None = 0.9
    param_budget: float | None = None
    layers: tuple[str, ...] = ()  # empty: every eligible layer

    def __post_init__(self) -> None:
        if (self.energy is None) == (self.param_budget is None):
            raise EdgeError("lowrank: give exactly one of energy or param_budget")
        for what, v in (("--lowrank energy", self.energy), ("lowrank param_budget", self.param_budget)):
            if v is not None and not 0.0 < v <= 1.0:
                raise EdgeError(f"{what} must be in (0, 1], got {v}")


@dataclass(frozen=True)
class _Plan:
    name: str
    a: np.ndarray
    b: np.ndarray


@dataclass
class LowRankPass:
    """Factorize Dense and 1×1 Conv2D kernels by truncated SVD."""

    config: LowRankConfig = field(default_factory=LowRankConfig)
    name: str = "lowrank"

    def apply(self, model: KerasModel, ctx: PassContext) -> PassOutcome:
        """A copy of ``model`` with each eligible (or named) layer split into two factors where that saves weights."""
        eligible = [lay for lay in model.layers if _eligible(lay)]
        wanted = set(self.config.layers) or {lay.name for lay in eligible}
        missing = wanted - {lay.name for lay in eligible}
        if missing:
            raise EdgeError(
                f"lowrank: layer {sorted(missing)[0]!r} is not a Dense or 1x1 Conv2D layer of "
                f"model {model.name!r}"
            )
        if not eligible:
            raise EdgeError(f"lowrank: model {model.name!r} has no Dense or 1x1 Conv2D layer")
        plans, notes = [], []
        for layer in eligible:
            if layer.name not in wanted:
                continue
            plan = self._plan(layer)
            if plan is None:
                notes.append(f"{layer.name}: left whole (the chosen rank would not save weights)")
            else:
                plans.append(plan)
        new = _rebuild(model, plans) if plans else model
        before, after = keras_cost(model), keras_cost(new)
        changes: dict[str, float | int | str] = {
            "factorized_layers": len(plans), "params_before": before.params,
            "params_after": after.params, "macs_before": before.macs, "macs_after": after.macs,
            "ranks": ",".join(f"{p.name}:{p.a.shape[1]}" for p in plans),
        }
        return PassOutcome(model=new, changes=changes, notes=tuple(notes))

    def _plan(self, layer: Any) -> _Plan | None:
        kernel = layer.get_weights()[0]
        w = kernel.reshape(kernel.shape[-2], kernel.shape[-1])
        n_in, n_out = w.shape
        if self.config.energy is not None:
            s = np.linalg.svd(w.astype(np.float64), compute_uv=False)
            rank = rank_for_energy(s, self.config.energy)
        else:
            rank = rank_for_budget(n_in, n_out, float(self.config.param_budget or 0.0))
        if not saves(n_in, n_out, rank):
            return None
        a, b = factorize(w, rank)
        return _Plan(layer.name, a, b)


def _eligible(layer: Any) -> bool:
    kind = type(layer).__name__
    if kind == "Dense":
        return True
    if kind != "Conv2D":
        return False
    c = layer.get_config()
    return (tuple(c["kernel_size"]) == (1, 1) and tuple(c["strides"]) == (1, 1)
            and int(c.get("groups", 1)) == 1 and c.get("data_format") == "channels_last")


def _rebuild(model: KerasModel, plans: list[_Plan]) -> Any:
    import keras

    cfg = copy.deepcopy(model.get_config())
    sequential = isinstance(model, keras.Sequential)
    names = {p.name: p for p in plans}
    layers = []
    for lc in cfg["layers"]:
        lc.pop("build_config", None)
        name = lc["config"]["name"] if sequential else lc.get("name")
        if name in names:
            layers.append(_first_factor(lc, names[name], sequential))
            if not sequential:
                lc["inbound_nodes"] = [_call_on(lc["inbound_nodes"][0], names[name])]
        layers.append(lc)
    cfg["layers"] = layers
    new = (keras.Sequential if sequential else keras.Model).from_config(cfg)
    for layer in model.layers:
        w = layer.get_weights()
        if layer.name in names:
            p = names[layer.name]
            shape = w[0].shape[:-2]
            new.get_layer(f"{layer.name}_lowrank").set_weights([p.a.reshape(*shape, *p.a.shape)])
            w = [p.b.reshape(*shape, *p.b.shape), *w[1:]]
        if w:
            new.get_layer(layer.name).set_weights(w)
    return new


def _first_factor(lc: dict[str, Any], plan: _Plan, sequential: bool) -> dict[str, Any]:
    first = copy.deepcopy(lc)
    name = f"{plan.name}_lowrank"
    c = first["config"]
    c.update(name=name, use_bias=False, activation="linear")
    c["units" if first["class_name"] == "Dense" else "filters"] = int(plan.a.shape[1])
    for key in ("kernel_regularizer", "bias_regularizer", "activity_regularizer", "kernel_constraint"):
        c[key] = None
    if not sequential:
        first["name"] = name
    return first


def _call_on(original: dict[str, Any], plan: _Plan) -> dict[str, Any]:
    """The original call's input tensor, now coming from the first factor."""
    tensor = copy.deepcopy(original["args"][0])
    tensor["config"]["keras_history"] = [f"{plan.name}_lowrank", 0, 0]
    shape = list(tensor["config"]["shape"])
    tensor["config"]["shape"] = [*shape[:-1], int(plan.a.shape[1])]
    return {"args": [tensor], "kwargs": {}}
