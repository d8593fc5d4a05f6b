"""Keep converter chatter off the terminal, so ``--json`` output stays one clean object
and the table is not buried in TensorFlow logs."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator

VERBOSE_ENV = "EDGE_VERBOSE"


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Swallow what is written to file descriptors 1 and 2 meanwhile, and Python warnings.

    Keras' export prints its endpoint listing, the TFLite converter and MLIR log from
    C++, ONNX Runtime's quantizer logs through the root logger; none of them can be
    turned off by an option. Errors still surface as exceptions. ``EDGE_VERBOSE=1``
    keeps all of it.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if os.environ.get(VERBOSE_ENV):
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
