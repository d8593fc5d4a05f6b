"""Results as JSON lines on standard output."""

from __future__ import annotations

import json
import sys
from typing import TextIO

from device_agent.sinks.base import Result


class StdoutSink:
    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout

    def emit(self, result: Result) -> None:
        self.stream.write(json.dumps(result.to_dict(), separators=(",", ":")) + "\n")

    def close(self) -> None:
        self.stream.flush()
