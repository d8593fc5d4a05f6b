"""The on-device agent: runs signed model bundles on local sensor data.

Light by design: numpy, a runtime, paho-mqtt. It never imports ``edge_sdk`` or
TensorFlow (a test enforces it).
"""

from __future__ import annotations

from device_agent.errors import BundleError, EdgeError, InputError, RuntimeLoadError
from device_agent.protocol.manifest import Manifest, ModelFile, ModelFormat, TensorSpec

__version__ = "0.1.0"

__all__ = [
    "BundleError",
    "EdgeError",
    "InputError",
    "Manifest",
    "ModelFile",
    "ModelFormat",
    "RuntimeLoadError",
    "TensorSpec",
    "__version__",
]
