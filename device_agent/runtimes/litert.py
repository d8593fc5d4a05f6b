"""LiteRT (``ai_edge_litert``): the first choice for ``.tflite`` files."""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path
from typing import Any

from ai_edge_litert.interpreter import Interpreter, OpResolverType, load_delegate

from device_agent.protocol.manifest import ModelFormat
from device_agent.runtimes._tflite_common import TFLiteInterpreterRuntime
from device_agent.runtimes.base import Runtime, RuntimeOptions

log = logging.getLogger(__name__)


def external_delegate(options: RuntimeOptions) -> Any | None:
    """The external delegate ``options`` names, loaded; ``None`` (logged) if it cannot load."""
    if not options.delegate:
        return None
    if "/" in options.delegate and not Path(options.delegate).is_file():
        log.warning("LiteRT delegate %s: no such file; running on the CPU", options.delegate)
        return None
    try:
        # dlopen first: LiteRT's Delegate object, failing on a library that does not load,
        # leaves a half-made object whose finalizer raises (noise on stderr).
        ctypes.CDLL(options.delegate)
        return load_delegate(options.delegate, dict(options.delegate_options))
    except (ValueError, OSError, RuntimeError) as e:
        log.warning("LiteRT delegate %s did not load (%s); running on the CPU", options.delegate,
                    str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
        return None


class LiteRTBackend:
    """``.tflite`` on LiteRT, with XNNPACK or an external delegate (Edge TPU, NPU) as options ask."""

    name = "litert"
    format = ModelFormat.TFLITE

    def load(self, path: Path, options: RuntimeOptions) -> Runtime:
        """An interpreter on ``path``: the external delegate if it loads, else XNNPACK unless turned off."""
        kw: dict[str, Any] = {} if options.xnnpack else {
            "experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        }
        delegate = external_delegate(options)
        if delegate is not None:
            kw["experimental_delegates"] = [delegate]
        rt = TFLiteInterpreterRuntime(Interpreter, path, options, **kw)
        rt.accelerator = f"delegate:{Path(options.delegate or '').name}" if delegate is not None else (
            "xnnpack" if options.xnnpack else "cpu")
        return rt
