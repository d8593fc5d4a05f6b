"""ONNX Runtime, for ``.onnx`` files; providers and threads come from RuntimeOptions."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from device_agent.errors import InputError
from device_agent.protocol.manifest import ModelFormat, TensorSpec
from device_agent.runtimes.base import Runtime, RuntimeOptions

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}


log = logging.getLogger(__name__)

# Short names for the execution providers a config names; ONNX Runtime's own names work too.
PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "dml": "DmlExecutionProvider",
}
_SHORT = {v: k for k, v in PROVIDERS.items()}


def choose_providers(wanted: Sequence[str], available: Sequence[str]) -> list[str]:
    """The wanted providers that are installed, in order, CPU last; each one skipped is
    logged at warning level with what is installed."""
    chosen = []
    for name in wanted:
        full = PROVIDERS.get(name.lower(), name)
        if full in available:
            chosen.append(full)
        else:
            log.warning("ONNX Runtime execution provider %s is not available here (installed: %s); "
                        "falling back", name, ", ".join(_SHORT.get(a, a) for a in available))
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def _spec(arg: Any) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else -1 for d in arg.shape)
    return TensorSpec(name=arg.name, shape=shape, dtype=_ORT_TYPES.get(arg.type, arg.type))


class OnnxRuntime:
    """An ONNX Runtime session on the first preferred provider that starts, logged when it falls back."""

    def __init__(self, path: Path, options: RuntimeOptions):
        so = ort.SessionOptions()
        if options.threads:
            so.intra_op_num_threads = options.threads
            so.inter_op_num_threads = 1
        so.log_severity_level = 3
        providers = choose_providers(options.providers, ort.get_available_providers())
        self._sess = ort.InferenceSession(str(path), sess_options=so, providers=providers)
        used = self._sess.get_providers()[0]  # after ONNX Runtime's own fallback (no GPU, ...)
        self.accelerator = _SHORT.get(used, used)
        if used != providers[0]:
            log.warning("ONNX Runtime could not start %s for %s; running on %s", providers[0], path.name, used)
        self.inputs = tuple(_spec(a) for a in self._sess.get_inputs())
        self.outputs = tuple(_spec(a) for a in self._sess.get_outputs())
        self._in_names = [s.name for s in self.inputs]
        self._out_names = [s.name for s in self.outputs]
        self._last: list[np.ndarray] = []

    def run(self, tensors: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Every output for one batch; an input that does not fit is an InputError, not ORT's exception."""
        if len(tensors) != len(self._in_names):
            raise InputError(f"model takes {len(self._in_names)} inputs, got {len(tensors)}")
        feed = dict(zip(self._in_names, tensors, strict=True))
        try:
            return list(self._sess.run(self._out_names, feed))
        except ort.capi.onnxruntime_pybind11_state.InvalidArgument as e:
            raise InputError(f"input does not fit the model: {e}") from e


    def feed(self, tensor: np.ndarray, i: int) -> np.ndarray:
        """Run on one input (any layout), return output ``i``; others with :meth:`fetch`."""
        self._last = self.run([np.ascontiguousarray(tensor)])
        return self._last[i]

    def fetch(self, i: int) -> np.ndarray:
        """Output ``i`` of the last :meth:`feed`, without running again."""
        return self._last[i]


class OnnxRuntimeBackend:
    """``.onnx`` on ONNX Runtime, with the execution providers the options prefer."""

    name = "onnxruntime"
    format = ModelFormat.ONNX

    def load(self, path: Path, options: RuntimeOptions) -> Runtime:
        """A session on ``path`` (see :class:`OnnxRuntime` for the provider fallback)."""
        return OnnxRuntime(path, options)
