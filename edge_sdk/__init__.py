"""Host-side converter: optimize a Keras or ONNX model into a small, signed bundle.

Importing this package is cheap: TensorFlow and ONNX load only where they are used.
"""

from __future__ import annotations

from device_agent.errors import BundleError, EdgeError

__version__ = "0.1.0"

__all__ = ["BundleError", "EdgeError", "__version__"]
