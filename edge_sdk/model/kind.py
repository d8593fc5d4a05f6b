"""What kind of model an object is, and the names the code gives to models.

Passes work on two kinds of in-memory model: a ``keras.Model`` (trainable) and an
``onnx.ModelProto`` (post-training). :meth:`ModelKind.of` tells them apart in one place.
"""

from __future__ import annotations

import sys
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    import onnx

# Keras ships no type information, so a keras.Model is Any to mypy; the alias says what it is.
KerasModel: TypeAlias = Any
OnnxModel: TypeAlias = "onnx.ModelProto"
# Either kind; code that needs one narrows it with ModelKind.of.
Model: TypeAlias = Any


class ModelKind(str, Enum):
    """The two kinds of model the passes transform."""

    KERAS = "keras"
    ONNX = "onnx"

    @classmethod
    def of(cls, model: Model) -> ModelKind:
        """The kind of ``model``; ONNX only if onnx is loaded (an ONNX model brought it in)."""
        onnx_module = sys.modules.get("onnx")
        if onnx_module is not None and isinstance(model, onnx_module.ModelProto):
            return cls.ONNX
        return cls.KERAS
