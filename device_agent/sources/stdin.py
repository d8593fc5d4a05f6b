"""``stdin``: one reading per line, JSON: an array, or ``{"x": [...], "id": ..., "label": ...}``.

A malformed line becomes an error reading (counted, skipped); the source ends at EOF.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any, TextIO

import numpy as np

from device_agent.sources.base import Reading


def parse_line(line: str, n: int) -> Reading:
    """One JSON line → a reading (or an error reading saying what was wrong)."""
    rid = f"stdin:{n}"
    try:
        obj: Any = json.loads(line)
    except json.JSONDecodeError as e:
        return Reading(id=rid, value=None, error=f"line {n}: not JSON ({e.msg})")
    meta: dict[str, Any] = {}
    if isinstance(obj, dict):
        rid = str(obj.get("id", rid))
        if isinstance(obj.get("label"), int):
            meta["label"] = obj["label"]
        obj = obj.get("x")
    if not isinstance(obj, list):
        return Reading(
            id=rid, value=None, error=f"line {n}: expected a JSON array or an object with 'x'"
        )
    try:
        value = np.asarray(obj, dtype=np.float32)
    except (TypeError, ValueError) as e:
        return Reading(id=rid, value=None, error=f"line {n}: not a numeric array ({e})")
    return Reading(id=rid, value=value, meta=meta)


class StdinSource:
    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdin
        self._closed = False

    def __iter__(self) -> Iterator[Reading]:
        for n, line in enumerate(self.stream):
            if self._closed:
                return
            if line.strip():
                yield parse_line(line, n)

    def close(self) -> None:
        self._closed = True
