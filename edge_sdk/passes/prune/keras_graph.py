"""A Keras model read into the channel analysis's nodes (:mod:`edge_sdk.core.channel_graph`).

Which Keras layers make channels, pass them through, merge, join or flatten them, and
which the analysis cannot follow and why. Keras tensors are channels-last, so a
``Flatten`` puts channel ``c`` at spatial position ``p`` at index ``p·C + c``. A
``Reshape`` that keeps the last axis (the (N, C) → (N, 1, 1, C) of a squeeze-and-
excitation block, (N, H, W, C) → (N, H·W, C)) passes channels through unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from edge_sdk.core.channel_graph import Layout, Node, Role
from edge_sdk.model.kind import KerasModel

Shape = tuple[int | None, ...]

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
_ROLES = {
    **{k: Role.PRODUCER for k in PRODUCERS},
    **{k: Role.DEPTHWISE for k in DEPTHWISE},
    **{k: Role.MERGE for k in MERGES},
    "Concatenate": Role.CONCAT,
    "Flatten": Role.FLATTEN,
    "InputLayer": Role.INPUT,
}


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
        nodes.append(_node(name, kind, lc["config"], inputs, in_shapes, out_shape))
        prev = name
    outputs = [nodes[-1].name] if sequential else [o[0] for o in _output_list(cfg["output_layers"])]
    return nodes, outputs


def _node(
    name: str, kind: str, cfg: Mapping[str, Any], inputs: tuple[str, ...],
    in_shapes: tuple[Shape, ...], out_shape: Shape,
) -> Node:
    width = int(out_shape[-1]) if out_shape and out_shape[-1] is not None else 0
    reason = unsupported_reason(kind, cfg, in_shapes, out_shape)
    if reason is not None:
        return Node(name, kind, Role.OPAQUE, inputs, width, reason=reason, config=cfg)
    role = _ROLES.get(kind, Role.PASS)
    if role is Role.FLATTEN:
        spatial = math.prod(int(d or 1) for d in in_shapes[0][1:-1])
        return Node(name, kind, role, inputs, width, spatial=spatial, layout=Layout.CHANNELS_LAST, config=cfg)
    multiplier = int(cfg.get("depth_multiplier", 1)) if role is Role.DEPTHWISE else 1
    return Node(name, kind, role, inputs, width, multiplier=multiplier, config=cfg)


def _last_axis(axis: Any, ndim: int) -> bool:
    if isinstance(axis, list | tuple):
        return len(axis) == 1 and _last_axis(axis[0], ndim)
    return axis == -1 or axis == ndim - 1


def unsupported_reason(
    kind: str, cfg: Mapping[str, Any], in_shapes: tuple[Shape, ...], out_shape: Shape
) -> str | None:
    """Why a layer cannot take part in pruning, or None when the analysis understands it."""
    if cfg.get("data_format", "channels_last") != "channels_last":
        return f"{kind} with data_format={cfg['data_format']!r} (only channels_last)"
    if kind in PRODUCERS and int(cfg.get("groups", 1)) != 1:
        return f"grouped {kind} (groups={cfg['groups']})"
    if kind == "BatchNormalization" and not _last_axis(cfg.get("axis", -1), len(out_shape)):
        return f"BatchNormalization over axis {cfg.get('axis')} (only the channel axis)"
    if kind == "Concatenate" and not _last_axis(cfg.get("axis", -1), len(out_shape)):
        return f"Concatenate on axis {cfg.get('axis')} (only the channel axis)"
    if kind in ("Activation",) and cfg.get("activation") == "softmax":
        return "softmax across channels"
    if kind == "Reshape" and not keeps_channel_axis(in_shapes, out_shape):
        return (f"Reshape from {in_shapes[0][1:]} to {out_shape[1:]} moves the channel axis "
                "(only reshapes whose last axis stays the channels are understood)")
    known = PRODUCERS | DEPTHWISE | MERGES | PASS_THROUGH | {"InputLayer", "Concatenate", "Flatten", "Reshape"}
    if kind not in known:
        return f"{kind} is not a layer the channel analysis knows"
    return None


def keeps_channel_axis(in_shapes: tuple[Shape, ...], out_shape: Shape) -> bool:
    """A reshape that leaves the last axis alone: channel ``c`` stays at position ``c`` of
    the last axis, so the channel map passes through unchanged."""
    if len(in_shapes) != 1:
        return False
    c_in, c_out = in_shapes[0][-1] if in_shapes[0] else None, out_shape[-1] if out_shape else None
    return c_in is not None and c_in == c_out


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
