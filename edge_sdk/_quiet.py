"""Keep converter chatter off the terminal, so ``--json`` output stays one clean object
and the table is not buried in TensorFlow logs."""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import io
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from importlib.machinery import ModuleSpec
from types import ModuleType

from device_agent.quiet import VERBOSE_ENV, native_stderr_quiet, verbose

__all__ = ["VERBOSE_ENV", "quiet", "quiet_tensorflow_import", "terminal_stderr"]


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Swallow what is written to file descriptors 1 and 2 meanwhile, and Python warnings.

    Keras' export prints its endpoint listing, the TFLite converter and MLIR log from
    C++, ONNX Runtime's quantizer logs through the root logger; none of them can be
    turned off by an option. Errors still surface as exceptions. ``EDGE_VERBOSE=1``
    keeps all of it.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if verbose():
        yield
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved: list[tuple[int, int]] = []
    with tempfile.TemporaryFile() as sink, warnings.catch_warnings(), \
            contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            for fd in (1, 2):
                saved.append((fd, os.dup(fd)))
                os.dup2(sink.fileno(), fd)
            yield
        finally:
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)


def terminal_stderr() -> io.TextIOWrapper:
    """A private handle on the current stderr, unaffected by :func:`quiet` (for progress)."""
    return os.fdopen(os.dup(2), "w", buffering=1)


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Imports ``tensorflow`` with native stderr swallowed: its C++ start-up lines (absl's
    "All log messages before absl::InitializeLog()", oneDNN's notice) ignore
    ``TF_CPP_MIN_LOG_LEVEL``. One-shot: it steps aside once it has found the package."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> ModuleSpec | None:
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            with native_stderr_quiet():
                run(module)

        loader.exec_module = exec_module
        return spec


def quiet_tensorflow_import() -> None:
    """Unless verbose, make the first ``import tensorflow`` silent (see above)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if verbose() or "tensorflow" in sys.modules:
        return
    if not any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())
