"""Rebuilding a smaller Keras model: new layer configs, then the surviving weights copied.

The model's config is edited (``filters``/``units`` of producers) and the model is
built again with ``from_config``; each layer then receives its weights sliced along the
kept input and output positions computed by the analysis.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edge_sdk.core.channel_graph import Analysis, Node, kept_positions
from edge_sdk.core.criteria import Evidence, EvidenceKind
from edge_sdk.model.kind import KerasModel
from edge_sdk.passes.prune.keras_graph import DEPTHWISE, PRODUCERS

Keep = list[int]


def gather_evidence(model: KerasModel, a: Analysis, nodes: Sequence[Node]) -> list[tuple[Evidence, list[int]]]:
    """Kernels of producers (one row per output channel) and batch-norm scales, with slots."""
    out: list[tuple[Evidence, list[int]]] = []
    for node in nodes:
        if node.name in a.unknown:
            continue
        if node.name in a.producers:
            w = model.get_layer(node.name).get_weights()
            kernel = w[1] if node.kind.startswith("Separable") else w[0]
            rows = kernel.reshape(-1, kernel.shape[-1]).T
            out.append((Evidence(EvidenceKind.KERNEL, node.name, rows), a.producers[node.name]))
        elif node.kind == "BatchNormalization" and node.config.get("scale", True):
            gamma = model.get_layer(node.name).get_weights()[0]
            out.append((Evidence(EvidenceKind.BN_SCALE, node.name, gamma[:, None]), a.in_maps[node.name][0]))
    return out


def _slice_conv(w: list[np.ndarray], k_in: Keep, k_out: Keep, _m: int) -> list[np.ndarray]:
    kernel = w[0][..., k_in, :][..., k_out]
    return [kernel, *(b[k_out] for b in w[1:])]


def _slice_depthwise(w: list[np.ndarray], k_in: Keep, k_out: Keep, _m: int) -> list[np.ndarray]:
    return [w[0][..., k_in, :], *(b[k_out] for b in w[1:])]


def _slice_separable(w: list[np.ndarray], k_in: Keep, k_out: Keep, m: int) -> list[np.ndarray]:
    dw_out = [c * m + j for c in k_in for j in range(m)]
    return [w[0][..., k_in, :], w[1][..., dw_out, :][..., k_out], *(b[k_out] for b in w[2:])]


def _slice_bn(w: list[np.ndarray], k_in: Keep, _k_out: Keep, _m: int) -> list[np.ndarray]:
    return [v[k_in] for v in w]


Slicer = Callable[[list[np.ndarray], Keep, Keep, int], list[np.ndarray]]
SLICERS: dict[str, Slicer] = {
    **{k: _slice_conv for k in PRODUCERS if not k.startswith("Separable")},
    "SeparableConv1D": _slice_separable,
    "SeparableConv2D": _slice_separable,
    **{k: _slice_depthwise for k in DEPTHWISE},
    "BatchNormalization": _slice_bn,
}


def rebuild(model: KerasModel, a: Analysis, nodes: Sequence[Node], removed: set[int]) -> Any:
    """A new model with the units in ``removed`` cut out and every other weight kept."""
    import keras

    cfg = copy.deepcopy(model.get_config())
    by_name = {_layer_name(lc): lc for lc in cfg["layers"]}
    keeps: dict[str, tuple[Keep, Keep]] = {}
    for node in nodes:
        if node.kind not in SLICERS or node.name in a.unknown:
            continue
        k_in = kept_positions(a.in_maps[node.name][0], removed, a)
        k_out = kept_positions(a.out_maps[node.name], removed, a)
        keeps[node.name] = (k_in, k_out)
        if node.kind in PRODUCERS:
            field = "units" if node.kind == "Dense" else "filters"
            by_name[node.name]["config"][field] = len(k_out)
    for node in nodes:  # a reshape that keeps the channel axis names the channel count
        if node.kind == "Reshape" and node.name not in a.unknown:
            target = list(by_name[node.name]["config"]["target_shape"])
            target[-1] = len(kept_positions(a.out_maps[node.name], removed, a))
            by_name[node.name]["config"]["target_shape"] = tuple(target)
    for lc in cfg["layers"]:
        lc.pop("build_config", None)
    cls = keras.Sequential if isinstance(model, keras.Sequential) else keras.Model
    new = cls.from_config(cfg)
    for node in nodes:
        if node.kind == "InputLayer":
            continue
        weights = model.get_layer(node.name).get_weights()
        if not weights:
            continue
        if node.name in keeps:
            k_in, k_out = keeps[node.name]
            m = int(node.config.get("depth_multiplier", 1))
            weights = SLICERS[node.kind](weights, k_in, k_out, m)
        new.get_layer(node.name).set_weights(weights)
    return new


def _layer_name(lc: dict[str, Any]) -> str:
    return str(lc.get("name") or lc["config"]["name"])
