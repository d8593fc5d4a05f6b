"""Affine int8/uint8 quantization: pure math shared by host and device."""

from __future__ import annotations

import numpy as np

from device_agent.errors import InputError
from device_agent.protocol.manifest import TensorSpec

_RANGES = {"int8": (-128, 127), "uint8": (0, 255)}


def quantize(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """``q = clip(round(x / scale) + zero_point)`` in the spec's integer dtype."""
    if not spec.quantized:
        return np.asarray(x, dtype=spec.dtype)
    xf = np.asarray(x, dtype=np.float32)
    if not np.isfinite(xf).all():
        raise InputError(f"input {spec.name}: contains NaN or infinite values")
    lo, hi = _RANGES[spec.dtype]
    assert spec.scale is not None and spec.zero_point is not None
    q = np.round(xf / np.float32(spec.scale)) + spec.zero_point
    return np.clip(q, lo, hi).astype(spec.dtype)


def dequantize(q: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """``x = (q - zero_point) * scale`` as float32; float tensors pass through."""
    if not spec.quantized:
        return np.asarray(q, dtype=np.float32) if q.dtype.kind == "f" else q
    assert spec.scale is not None and spec.zero_point is not None
    return (q.astype(np.float32) - np.float32(spec.zero_point)) * np.float32(spec.scale)
