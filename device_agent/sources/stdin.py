"""``stdin``: one reading per line, JSON: an array, ``{"x": [...], "id": ..., "label": ...}``,
or ``{"inputs": {"NAME": [...], ...}}`` for a model with several named inputs.

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
        if isinstance(obj.get("stream"), str):
            meta["stream"] = obj["stream"]  # carried state is kept per stream
        if isinstance(obj.get("inputs"), dict):
            return _named(rid, obj["inputs"], meta, n)
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


def _named(rid: str, inputs: dict[str, Any], meta: dict[str, Any], n: int) -> Reading:
    """``{"inputs": {"audio": [...], "sr": 16000}}``: one array per input name, each in
    the dtype JSON gives it (integers stay integers; the model's dtype is applied later)."""
    try:
        value = {str(k): np.asarray(v) for k, v in inputs.items()}
    except (TypeError, ValueError) as e:
        return Reading(id=rid, value=None, error=f"line {n}: 'inputs' is not numeric ({e})")
    bad = [k for k, v in value.items() if v.dtype.kind not in "fiub"]
    if bad:
        return Reading(id=rid, value=None, error=f"line {n}: inputs {bad} are not numeric arrays")
    return Reading(id=rid, value=value, meta=meta)


class StdinSource:
    """Readings from JSON lines on standard input, until EOF."""

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
        """End the iteration at the next line (a read already waiting still waits)."""
        self._closed = True
