"""Least-squares reconstruction of a layer after its input channels were removed (pure).

Channel pruning by reconstruction (He et al., 2017; Luo et al., ThiNet, 2017): choose the
input channels that contribute least to the next layer's output on calibration data,
then refit that layer's weights so its output on the remaining channels matches the
original output as closely as possible in the least-squares sense.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ConvGeometry:
    """The kernel, strides, pads and dilations that turn a conv input into im2col rows."""

    kernel: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right
    dilations: tuple[int, int] = (1, 1)


def im2col(x: np.ndarray, g: ConvGeometry) -> np.ndarray:
    """NCHW input → rows (N*OH*OW, C*KH*KW), columns ordered as an OIHW kernel's I,H,W."""
    n, c, h, w = x.shape
    kh, kw = g.kernel
    sh, sw = g.strides
    dh, dw = g.dilations
    t, left, b, r = g.pads
    xp = np.pad(x, ((0, 0), (0, 0), (t, b), (left, r)))
    oh = (h + t + b - dh * (kh - 1) - 1) // sh + 1
    ow = (w + left + r - dw * (kw - 1) - 1) // sw + 1
    cols = np.empty((n, c, kh, kw, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xp[:, :, i * dh : i * dh + sh * oh : sh, j * dw : j * dw + sw * ow : sw]
    return cols.transpose(0, 4, 5, 1, 2, 3).reshape(n * oh * ow, c * kh * kw)


def column_energy(cols: np.ndarray, w: np.ndarray) -> np.ndarray:
    """How much each input column contributes to ``cols @ w``: E[x_i²]·‖w_i‖²."""
    return np.mean(np.square(cols), axis=0) * np.sum(np.square(w), axis=1)


def refit(cols: np.ndarray, target: np.ndarray, *, ridge: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """Weights and bias minimizing ‖cols·W + b − target‖² (+ a small ridge for stability)."""
    a = np.hstack([cols, np.ones((len(cols), 1), cols.dtype)]).astype(np.float64)
    gram = a.T @ a
    gram += ridge * np.trace(gram) / len(gram) * np.eye(len(gram))
    sol = np.linalg.solve(gram, a.T @ target.astype(np.float64))
    return sol[:-1].astype(np.float32), sol[-1].astype(np.float32)


def sample_rows(n: int, limit: int, seed: int = 0) -> np.ndarray:
    """Up to ``limit`` row indices (all of them when there are fewer)."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))
