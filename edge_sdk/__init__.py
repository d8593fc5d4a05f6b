"""The host side: optimize a Keras or ONNX model into a small, signed bundle, roll it out
over the air, and watch the fleet that runs it.

Importing this package is cheap: TensorFlow and ONNX load only where they are used.
"""

from __future__ import annotations

from device_agent.errors import BundleError, EdgeError

__version__ = "0.1.0"

__all__ = ["BundleError", "EdgeError", "__version__"]
