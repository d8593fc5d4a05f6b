"""Parameter and multiply-accumulate counts of a Keras model.

Kept small and local to the compression passes (the converter's ``edge_sdk.analysis``
may replace it once both are on main). MACs count the kernels of convolution and dense
layers at their output resolution, which is where nearly all the arithmetic is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

_KERNEL_LAYERS = {
    "Conv1D", "Conv2D", "Conv3D", "Dense", "DepthwiseConv1D", "DepthwiseConv2D",
    "SeparableConv1D", "SeparableConv2D",
}


@dataclass(frozen=True)
class Cost:
    params: int
    macs: int


def keras_cost(model: Any) -> Cost:
    """Parameters (all weights) and MACs per sample of a built Keras model."""
    return Cost(params=int(model.count_params()), macs=_macs(model))


def _macs(model: Any) -> int:
    total = 0
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            total += _macs(layer)
            continue
        if type(layer).__name__ not in _KERNEL_LAYERS:
            continue
        out = layer.output[0] if isinstance(layer.output, list | tuple) else layer.output
        positions = int(np.prod([d or 1 for d in out.shape[1:-1]]))
        for w in layer.weights:
            if len(w.shape) >= 2:  # kernels, not biases
                total += int(np.prod(w.shape)) * positions
    return total
