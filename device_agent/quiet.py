"""Keep native runtime chatter (``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.``)
off the terminal unless asked for: ``EDGE_VERBOSE=1`` or ``-v`` keeps it."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator

VERBOSE_ENV = "EDGE_VERBOSE"


def verbose() -> bool:
    """Whether the user asked for every log line (``EDGE_VERBOSE`` set and not ``0``)."""
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


@contextlib.contextmanager
def native_stderr_quiet() -> Iterator[None]:
    """Swallow what native code writes to file descriptor 2 meanwhile.

    LiteRT logs from C++ with no switch to turn it off (``TF_CPP_MIN_LOG_LEVEL`` does not
    reach it). If the block raises, what was swallowed is written out after all: it may
    say why.
    """
    if verbose():
        yield
        return
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            os.write(2, sink.read())
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
