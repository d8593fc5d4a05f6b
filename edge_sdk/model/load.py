"""Loading the user's model: Keras (``.keras``, ``.h5``, SavedModel dir) or ONNX.

TensorFlow is imported here, lazily, only when a Keras model is actually loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from device_agent.errors import EdgeError


class SourceKind(str, Enum):
    """What a model path holds, told from its suffix (or a SavedModel folder)."""

    KERAS = "keras"
    SAVED_MODEL = "saved_model"
    ONNX = "onnx"
    TFLITE = "tflite"


@dataclass(frozen=True)
class SourceModel:
    """A loaded input model. ``obj`` is a ``keras.Model`` or an ``onnx.ModelProto``."""

    kind: SourceKind
    path: Path
    obj: Any

    @property
    def is_keras(self) -> bool:
        """Whether ``obj`` is a Keras model (a ``.keras``/``.h5`` file or a SavedModel)."""
        return self.kind in (SourceKind.KERAS, SourceKind.SAVED_MODEL)


def detect_kind(path: Path) -> SourceKind:
    """The kind of model at ``path``; an error names a folder or suffix it cannot load."""
    if path.is_dir():
        if (path / "saved_model.pb").exists():
            return SourceKind.SAVED_MODEL
        raise EdgeError(f"{path}: a folder but not a SavedModel (no saved_model.pb)")
    suffix = path.suffix.lower()
    kinds = {".keras": SourceKind.KERAS, ".h5": SourceKind.KERAS, ".hdf5": SourceKind.KERAS,
             ".onnx": SourceKind.ONNX, ".tflite": SourceKind.TFLITE}
    if suffix not in kinds:
        raise EdgeError(
            f"{path}: unknown model format {suffix!r}; expected .keras, .h5, a SavedModel "
            "folder, .onnx or .tflite"
        )
    return kinds[suffix]


def load_source(path: str | Path) -> SourceModel:
    """Load a model file; a corrupt or unreadable file is an :class:`EdgeError`."""
    p = Path(path)
    if not p.exists():
        raise EdgeError(f"{p}: no such model file")
    kind = detect_kind(p)
    try:
        obj = _LOADERS[kind](p)
    except EdgeError:
        raise
    except Exception as e:  # each library raises its own types for a corrupt file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise EdgeError(f"{p}: cannot read this {kind.value} model: {first[:300]}") from e
    return SourceModel(kind=kind, path=p, obj=obj)


def _load_keras(p: Path) -> Any:
    import keras

    return keras.models.load_model(p, compile=False)


def _load_saved_model(p: Path) -> Any:
    import keras

    # Keras 3 reads a SavedModel only as an inference layer; wrap it into a Model.
    layer = keras.layers.TFSMLayer(str(p), call_endpoint="serving_default")
    import tensorflow as tf

    sig = tf.saved_model.load(str(p)).signatures["serving_default"]
    spec = next(iter(sig.structured_input_signature[1].values()))
    inp = keras.Input(shape=tuple(spec.shape[1:]), dtype=spec.dtype.name)
    out = layer(inp)
    if isinstance(out, dict):
        out = next(iter(out.values()))
    return keras.Model(inp, out)


def _load_onnx(p: Path) -> Any:
    import onnx

    model = onnx.load(str(p))
    onnx.checker.check_model(model)
    return model


def _load_tflite(p: Path) -> Any:
    data = p.read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise EdgeError(f"{p}: not a TFLite flatbuffer (no TFL3 identifier)")
    return data


_LOADERS = {
    SourceKind.KERAS: _load_keras,
    SourceKind.SAVED_MODEL: _load_saved_model,
    SourceKind.ONNX: _load_onnx,
    SourceKind.TFLITE: _load_tflite,
}
