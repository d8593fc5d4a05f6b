"""The legacy ``tflite_runtime`` wheel, for older device images.

Its last release (2.14) was built against numpy 1 and fails to import under numpy 2
("_ARRAY_API not found"); the registry then skips it with that reason.
"""

from __future__ import annotations

from pathlib import Path

from tflite_runtime.interpreter import Interpreter

from device_agent.protocol.manifest import ModelFormat
from device_agent.runtimes._tflite_common import TFLiteInterpreterRuntime
from device_agent.runtimes.base import Runtime, RuntimeOptions


class TFLiteRuntimeBackend:
    """``.tflite`` on the legacy ``tflite_runtime`` wheel of older device images."""

    name = "tflite_runtime"
    format = ModelFormat.TFLITE

    def load(self, path: Path, options: RuntimeOptions) -> Runtime:
        """Open ``path`` with ``tflite_runtime``'s interpreter; of the options only threads apply."""
        return TFLiteInterpreterRuntime(Interpreter, path, options)
