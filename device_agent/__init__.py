"""The on-device agent: runs signed model bundles on local sensor data.

Light by design: numpy, a runtime, paho-mqtt. It never imports ``edge_sdk`` or
TensorFlow (a test enforces it). The front door is :class:`Agent`
(``Agent.from_bundle(path)``, ``agent.infer(x)``, ``agent.serve(source, sinks)``),
imported on first use so that ``import device_agent`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from device_agent.errors import BundleError, EdgeError, InputError, RuntimeLoadError
from device_agent.protocol.manifest import Manifest, ModelFile, ModelFormat, TensorSpec

if TYPE_CHECKING:
    from device_agent.agent import Agent
    from device_agent.engine import Prediction

__version__ = "0.1.0"
_LAZY = {"Agent": "device_agent.agent", "Prediction": "device_agent.engine"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)


__all__ = [
    "Agent",
    "BundleError",
    "EdgeError",
    "InputError",
    "Manifest",
    "ModelFile",
    "ModelFormat",
    "Prediction",
    "RuntimeLoadError",
    "TensorSpec",
    "__version__",
]
