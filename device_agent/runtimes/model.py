"""A loaded model with float in, float out: quantization handled from the model's specs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from device_agent.errors import InputError
from device_agent.protocol.manifest import TensorSpec
from device_agent.quant import dequantize, quantize
from device_agent.runtimes.base import Runtime


class Model:
    """Wraps a backend :class:`Runtime`.

    ``predict`` takes float inputs (batch first), quantizes them when the model's input
    is int8/uint8, runs, and returns float outputs. ``run_raw`` skips both conversions.
    """

    def __init__(self, runtime: Runtime, *, backend: str, path: Path):
        self.runtime = runtime
        self.backend = backend
        self.path = path

    @property
    def accelerator(self) -> str:
        """What runs the model: ``cpu``, ``xnnpack``, ``cuda``, ``delegate:NAME`` ..."""
        return str(getattr(self.runtime, "accelerator", "cpu"))

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        """The model's input specs as the runtime reports them (name, shape, dtype, quantization)."""
        return self.runtime.inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        """The model's output specs; quantized ones are dequantized by :meth:`predict`."""
        return self.runtime.outputs

    def prepare(self, x: np.ndarray, index: int = 0) -> np.ndarray:
        """Check a float batch against input ``index`` and convert it to the model's dtype."""
        spec = self.inputs[index]
        check_shape(x, spec)
        if spec.quantized:
            return quantize(x, spec)
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise InputError(f"input {spec.name}: contains NaN or infinite values")
        return np.ascontiguousarray(x, dtype=spec.dtype)

    def predict(self, *xs: np.ndarray) -> list[np.ndarray]:
        """Float batches, one per input → float outputs, quantizing and dequantizing where the model is int8."""
        tensors = [self.prepare(x, i) for i, x in enumerate(xs)]
        raw = self.runtime.run(tensors)
        return [dequantize(r, s) for r, s in zip(raw, self.outputs, strict=True)]

    def predict1(self, x: np.ndarray) -> np.ndarray:
        """Single-input, single-output convenience: float batch → float output batch."""
        return self.predict(x)[0]

    def run_raw(self, *tensors: np.ndarray) -> list[np.ndarray]:
        """Tensors already in the model's dtypes → its raw outputs, skipping both conversions."""
        return self.runtime.run(list(tensors))


def check_shape(x: np.ndarray, spec: TensorSpec) -> None:
    """Every dimension but the batch must match where the model fixes it."""
    if x.ndim != len(spec.shape):
        raise InputError(
            f"input {spec.name}: expected {len(spec.shape)} dimensions {spec.shape}, "
            f"got shape {x.shape}"
        )
    for i, (got, want) in enumerate(zip(x.shape[1:], spec.shape[1:], strict=True), start=1):
        if want > 0 and got != want:
            raise InputError(
                f"input {spec.name}: dimension {i} must be {want} (model shape {spec.shape}), "
                f"got shape {x.shape}"
            )
