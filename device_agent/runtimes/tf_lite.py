"""``tensorflow.lite``: the fallback where full TensorFlow is installed (a workstation).

Never imported unless the earlier ``.tflite`` backends are missing, or the user asks
for it by name: TensorFlow takes seconds to load and is not on devices.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from device_agent.protocol.manifest import ModelFormat
from device_agent.runtimes._tflite_common import TFLiteInterpreterRuntime
from device_agent.runtimes.base import Runtime, RuntimeOptions

if importlib.util.find_spec("tensorflow") is None:
    raise ImportError("tensorflow is not installed")


class TFLiteTensorFlowBackend:
    """``.tflite`` on full TensorFlow's interpreter, where neither LiteRT nor tflite_runtime is installed."""

    name = "tf_lite"
    format = ModelFormat.TFLITE

    def load(self, path: Path, options: RuntimeOptions) -> Runtime:
        """Import TensorFlow only now (it takes seconds) and open ``path``; of the options only threads apply."""
        tf = importlib.import_module("tensorflow")
        return TFLiteInterpreterRuntime(tf.lite.Interpreter, path, options)
