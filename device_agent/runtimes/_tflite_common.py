"""The interpreter API shared by LiteRT, tflite_runtime and tf.lite."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from device_agent.errors import InputError
from device_agent.protocol.manifest import TensorSpec
from device_agent.quiet import native_stderr_quiet
from device_agent.runtimes.base import RuntimeOptions


def _spec(d: dict[str, Any]) -> TensorSpec:
    scale, zp = d.get("quantization", (0.0, 0))
    sig = d.get("shape_signature")
    shape = tuple(int(s) for s in (sig if sig is not None and len(sig) else d["shape"]))
    dtype = np.dtype(d["dtype"]).name
    quant = scale and dtype in ("int8", "uint8")
    return TensorSpec(
        name=str(d["name"]),
        shape=shape,
        dtype=dtype,
        scale=float(scale) if quant else None,
        zero_point=int(zp) if quant else None,
    )


class TFLiteInterpreterRuntime:
    """Wraps any ``Interpreter`` class with the TFLite Python API."""

    accelerator = "cpu"  # what runs the model; a backend names its delegate

    def __init__(self, interpreter_cls: Any, path: Path, options: RuntimeOptions, **kw: Any):
        args: dict[str, Any] = {"model_path": str(path), **kw}
        if options.threads:
            args["num_threads"] = options.threads
        with native_stderr_quiet():
            self._interp = interpreter_cls(**args)
            self._interp.allocate_tensors()
        self._in = self._interp.get_input_details()
        self._out = self._interp.get_output_details()
        self.inputs = tuple(_spec(d) for d in self._in)
        self.outputs = tuple(_spec(d) for d in self._out)
        self._shapes = [tuple(d["shape"]) for d in self._in]
        # Bound methods and index lists are looked up once: per call they cost more than
        # the set_tensor/get_tensor they wrap (a small int8 model invokes in ~40 µs).
        self._in_idx = [int(d["index"]) for d in self._in]
        self._out_idx = [int(d["index"]) for d in self._out]
        self._set = self._interp.set_tensor
        self._get = self._interp.get_tensor
        self._invoke = self._interp.invoke

    def run(self, tensors: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Set every input (resizing only when a shape changed), invoke, return every output."""
        if len(tensors) != len(self._in_idx):
            raise InputError(f"model takes {len(self._in_idx)} inputs, got {len(tensors)}")
        if len(tensors) == 1:  # the usual case, without zip and enumerate
            t = tensors[0]
            if t.shape != self._shapes[0]:
                self._fit_shapes(tensors)
            self._set(self._in_idx[0], t)
        else:
            self._fit_shapes(tensors)
            for i, t in zip(self._in_idx, tensors, strict=True):
                self._set(i, t)
        self._invoke()
        get = self._get
        return [get(i) for i in self._out_idx]

    def feed(self, tensor: np.ndarray, i: int) -> np.ndarray:
        """Set the one input, invoke, return output ``i``; read others with :meth:`fetch`."""
        if len(self._in_idx) != 1:
            raise InputError(f"model takes {len(self._in_idx)} inputs, got 1")
        try:  # the interpreter checks the shape itself; comparing it here too costs more
            self._set(self._in_idx[0], tensor)
        except ValueError:
            if tensor.shape == self._shapes[0]:
                raise
            self._fit_shapes([tensor])
            self._set(self._in_idx[0], tensor)
        self._invoke()
        return self._get(self._out_idx[i])  # type: ignore[no-any-return]

    def fetch(self, i: int) -> np.ndarray:
        """Output ``i`` of the last invoke (a copy, as ``run`` returns)."""
        return self._get(self._out_idx[i])  # type: ignore[no-any-return]

    def _fit_shapes(self, tensors: Sequence[np.ndarray]) -> None:
        # Resizing re-plans the whole graph, so it happens only when a shape changes
        # (a new batch size), never per call.
        changed = False
        for i, (d, t) in enumerate(zip(self._in, tensors, strict=True)):
            if tuple(t.shape) != self._shapes[i]:
                try:
                    self._interp.resize_tensor_input(d["index"], list(t.shape))
                except (ValueError, RuntimeError) as e:
                    raise InputError(f"input {d['name']}: cannot take shape {t.shape}: {e}") from e
                self._shapes[i] = tuple(t.shape)
                changed = True
        if changed:
            try:
                self._interp.allocate_tensors()
            except RuntimeError as e:
                raise InputError(f"model cannot run with input shapes {self._shapes}: {e}") from e
            self._out = self._interp.get_output_details()
            self._out_idx = [int(d["index"]) for d in self._out]
