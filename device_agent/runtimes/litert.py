"""LiteRT (``ai_edge_litert``): the first choice for ``.tflite`` files."""

from __future__ import annotations

from pathlib import Path

from ai_edge_litert.interpreter import Interpreter, OpResolverType

from device_agent.manifest import ModelFormat
from device_agent.runtimes._tflite_common import TFLiteInterpreterRuntime
from device_agent.runtimes.base import Runtime, RuntimeOptions


class LiteRTBackend:
    name = "litert"
    format = ModelFormat.TFLITE

    def load(self, path: Path, options: RuntimeOptions) -> Runtime:
        kw = {} if options.xnnpack else {
            "experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        }
        return TFLiteInterpreterRuntime(Interpreter, path, options, **kw)
