"""The named validation set: exact model tensors per sample and the outputs they gave.

``validation.npz`` of a packed bundle holds one array ``in.NAME`` per model input (first
axis = samples, each entry exactly the tensor the model was fed, batch dimension
included, rank-0 inputs as scalars) and ``y``: every output of each sample, dequantized,
flattened and concatenated. Host and device replay it with the same :func:`replay`.
Arrays are stored in the smallest dtype that gives back the same values
(:func:`smallest_exact`) and compressed, and the count is bounded in bytes
(:func:`sample_budget`), so the health check's inputs stay a small part of a bundle.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from device_agent.errors import BundleError
from device_agent.quant import dequantize
from device_agent.runtimes.model import Model

PREFIX = "in."
DEFAULT_FRACTION = 0.10
_NARROW = ("uint8", "int8", "uint16", "int16", "float16", "int32", "float32")


def replay(model: Model, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """Run every sample of ``inputs`` (input name → stacked tensors) one by one; returns
    ``(samples, values)``: all outputs of each sample, float32, flattened in order."""
    missing = [s.name for s in model.inputs if s.name not in inputs]
    if missing:
        raise BundleError(f"validation set lacks input(s) {missing}")
    n = len(inputs[model.inputs[0].name])
    rows = []
    for i in range(n):
        tensors = [np.ascontiguousarray(inputs[s.name][i], dtype=s.dtype) for s in model.inputs]
        raw = model.run_raw(*tensors)
        rows.append(np.concatenate([np.asarray(dequantize(r, s), dtype=np.float32).reshape(-1)
                                    for r, s in zip(raw, model.outputs, strict=True)]))
    return np.stack(rows) if rows else np.zeros((0, 0), np.float32)


def smallest_exact(a: np.ndarray) -> np.ndarray:
    """``a`` in the narrowest dtype whose values cast back to ``a``'s exactly."""
    if a.dtype.kind not in "fiub":
        return a
    for dt in _NARROW:
        if np.dtype(dt).itemsize >= a.dtype.itemsize:
            return a
        if np.dtype(dt).kind in "iu" and a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            continue
        with np.errstate(invalid="ignore", over="ignore"):
            narrow = a.astype(dt)
        if np.array_equal(narrow.astype(a.dtype), a):
            return narrow
    return a


def sample_budget(sample_bytes: int, model_bytes: int, *, fraction: float = DEFAULT_FRACTION) -> int:
    """How many samples of ``sample_bytes`` fit in ``fraction`` of the model's bytes (≥ 1)."""
    return max(1, int(fraction * model_bytes) // max(1, sample_bytes))


def pack_named(tensors: Sequence[Sequence[np.ndarray]], names: Sequence[str], y: np.ndarray) -> bytes:
    """The compressed ``validation.npz`` for per-sample ``tensors`` (in ``names`` order)."""
    arrays: dict[str, Any] = {PREFIX + name: smallest_exact(np.stack([t[k] for t in tensors]))
                              for k, name in enumerate(names)}
    arrays["y"] = np.asarray(y, dtype=np.float32)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def named_inputs(z: Mapping[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """The ``in.NAME`` arrays of a loaded validation set, or ``None`` for the ``x`` form."""
    named = {k[len(PREFIX):]: np.asarray(z[k]) for k in z if k.startswith(PREFIX)}
    return named or None
