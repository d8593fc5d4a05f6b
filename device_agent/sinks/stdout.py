"""Results as JSON lines on standard output."""

from __future__ import annotations

import json
import sys
from typing import TextIO

from device_agent.sinks.base import Result


class StdoutSink:
    """Each result as one compact JSON line, for piping into other tools."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout

    def emit(self, result: Result) -> None:
        """Write one result as a JSON line (not flushed per result: that is for :meth:`close`)."""
        self.stream.write(json.dumps(result.to_dict(), separators=(",", ":")) + "\n")

    def close(self) -> None:
        """Flush what is buffered; the stream stays open (the caller owns it)."""
        self.stream.flush()
