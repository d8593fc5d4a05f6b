"""Runtime backends, found through an explicit registry.

Each entry names a module in this package and the backend class in it. Modules are
imported on first use; one that fails to import (a wheel missing on this board, or
broken under this numpy) is logged with the reason and skipped, never a crash.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from device_agent.errors import RuntimeLoadError
from device_agent.machine import unsupported_machine
from device_agent.protocol.manifest import EXTRA_FOR_FORMAT, RUNTIME_FOR_FORMAT, ModelFormat
from device_agent.runtimes.base import Backend, Runtime, RuntimeOptions
from device_agent.runtimes.model import Model

log = logging.getLogger(__name__)

# Order is preference: for a .tflite file LiteRT is tried first, then the legacy wheel,
# then TensorFlow's own interpreter.
REGISTRY: dict[str, tuple[str, str]] = {
    "litert": ("device_agent.runtimes.litert", "LiteRTBackend"),
    "tflite_runtime": ("device_agent.runtimes.tflite_runtime", "TFLiteRuntimeBackend"),
    "tf_lite": ("device_agent.runtimes.tf_lite", "TFLiteTensorFlowBackend"),
    "onnxruntime": ("device_agent.runtimes.onnx", "OnnxRuntimeBackend"),
}

_SUFFIX = {".tflite": ModelFormat.TFLITE, ".onnx": ModelFormat.ONNX}
DISTRIBUTION = "edgekit-sdk"


@dataclass
class _Cache:
    backends: dict[str, Backend] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


_cache = _Cache()


def backend(name: str) -> Backend:
    """The backend registered as ``name``; :class:`RuntimeLoadError` if it cannot import."""
    if name not in REGISTRY:
        raise RuntimeLoadError(f"unknown runtime {name!r}; known: {', '.join(REGISTRY)}")
    if name in _cache.backends:
        return _cache.backends[name]
    if name in _cache.failures:
        raise RuntimeLoadError(f"runtime {name} is unavailable: {_cache.failures[name]}")
    module, cls = REGISTRY[name]
    try:
        b: Backend = getattr(importlib.import_module(module), cls)()
    except Exception as e:  # any import-time failure means "not on this device"
        reason = f"{type(e).__name__}: {e}".splitlines()[0]
        _cache.failures[name] = reason
        log.info("runtime %s skipped: %s", name, reason)
        raise RuntimeLoadError(f"runtime {name} is unavailable: {reason}") from e
    _cache.backends[name] = b
    return b


def available() -> dict[str, str]:
    """Every registered backend and ``"ok"`` or the reason it is unavailable."""
    out = {}
    for name in REGISTRY:
        try:
            backend(name)
            out[name] = "ok"
        except RuntimeLoadError:
            out[name] = _cache.failures.get(name, "unavailable")
    return out


def format_of(path: Path) -> ModelFormat:
    """A model file's format from its suffix; anything but ``.tflite``/``.onnx`` is a RuntimeLoadError."""
    try:
        return _SUFFIX[path.suffix.lower()]
    except KeyError:
        raise RuntimeLoadError(
            f"{path}: unknown model format {path.suffix!r}; expected .tflite or .onnx"
        ) from None


def load_model(
    path: str | Path, *, runtime: str | None = None, options: RuntimeOptions | None = None
) -> Model:
    """Load a ``.tflite`` or ``.onnx`` file with the named runtime or the first that works."""
    p = Path(path)
    if not p.is_file():
        raise RuntimeLoadError(f"{p}: no such model file")
    fmt = format_of(p)
    opts = options or RuntimeOptions()
    names = [runtime] if runtime else [n for n in REGISTRY if _format_hint(n) == fmt]
    reasons = []
    for name in names:
        try:
            b = backend(name)
        except RuntimeLoadError as e:
            reasons.append(str(e))
            continue
        if b.format != fmt:
            raise RuntimeLoadError(f"{p}: runtime {name} runs {b.format.value}, not {fmt.value}")
        try:
            rt = b.load(p, opts)
        except Exception as e:  # a parser's own exception type differs per backend
            raise RuntimeLoadError(f"{p}: {name} cannot load this model: {_first_line(e)}") from e
        return Model(rt, backend=name, path=p)
    raise RuntimeLoadError(f"{p}: {missing_runtime(fmt)} ({'; '.join(reasons)})")


def missing_runtime(fmt: ModelFormat) -> str:
    """What to tell a person whose device has no runtime for ``fmt``: the extra to install,
    or, on 32-bit ARM, that no such runtime exists for it."""
    why = unsupported_machine()
    if why:
        return f"no {RUNTIME_FOR_FORMAT[fmt]} for {fmt.value} models: {why}"
    return (
        f"{fmt.value} models need {RUNTIME_FOR_FORMAT[fmt]}, which is not installed here: "
        f"pip install '{DISTRIBUTION}[{EXTRA_FOR_FORMAT[fmt]}]'"
    )


def can_run(fmt: ModelFormat) -> bool:
    """Whether some registered backend for ``fmt`` imports on this device."""
    for name in REGISTRY:
        if _format_hint(name) != fmt:
            continue
        try:
            backend(name)
        except RuntimeLoadError:
            continue
        return True
    return False


def choose_format(
    targets: tuple[ModelFormat, ...], *, prefer: ModelFormat | None = None, runtime: str | None = None
) -> ModelFormat:
    """Which of a bundle's formats to serve: ``prefer`` or ``runtime``'s when the bundle has
    it, else the first whose runtime is installed; with none installed, a
    :class:`RuntimeLoadError` naming the extra that brings one."""
    if runtime in REGISTRY:
        prefer = _format_hint(runtime)
    if prefer in targets:
        return prefer
    for fmt in targets:
        if can_run(fmt):
            return fmt
    raise RuntimeLoadError("; ".join(missing_runtime(f) for f in targets))


def _format_hint(name: str) -> ModelFormat:
    return ModelFormat.ONNX if name == "onnxruntime" else ModelFormat.TFLITE


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


__all__ = [
    "REGISTRY",
    "Backend",
    "Model",
    "Runtime",
    "RuntimeOptions",
    "available",
    "backend",
    "can_run",
    "choose_format",
    "format_of",
    "load_model",
    "missing_runtime",
    "unsupported_machine",
]
