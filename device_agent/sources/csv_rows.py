"""CSV readings, one rule for the agent and the SDK (``edge eval``/``optimize --data``).

- A first row with any cell that is not a number is a header.
- A header column named ``label``, ``y``, ``target`` or ``class`` holds the truth, not an
  input value (integer class indexes).
- Every other row is one reading of the header's width (or, without a header, the
  widest row's). A row that is shorter or longer, or holds a cell that is not a number,
  is a bad reading: it is kept, with the reason, so the agent counts it and goes on.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device_agent.errors import EdgeError

LABEL_COLUMNS = ("label", "y", "target", "class")


@dataclass(frozen=True)
class CsvRows:
    """``x`` (rows × values, float32; bad rows are NaN), ``y`` (truth per row, -1 where
    a bad row has none) and, per row, ``None`` or why it is a bad reading."""

    x: np.ndarray
    y: np.ndarray | None
    errors: tuple[str | None, ...]
    header: tuple[str, ...] | None


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def parse_csv(rows: list[list[str]], source: str) -> CsvRows:
    """Parse the cells of a CSV file (pure: the caller reads the file)."""
    rows = [r for r in rows if any(c.strip() for c in r)]  # blank lines are not readings
    header = tuple(c.strip() for c in rows[0]) if rows and not all(map(_is_number, rows[0])) else None
    body = rows[1:] if header is not None else rows
    if not body:
        raise EdgeError(f"{source}: the CSV file has no data rows"
                        + (f" (only the header {','.join(header)})" if header else ""))
    width = len(header) if header is not None else max(len(r) for r in body)
    label = _label_column(header)
    n_x = width - (label is not None)
    x = np.full((len(body), n_x), np.nan, dtype=np.float32)
    y = None if label is None else np.full(len(body), -1, dtype=np.int64)
    errors: list[str | None] = []
    for i, r in enumerate(body):
        err = _row_error(r, width, i + 1 + (header is not None))
        errors.append(err)
        if err is not None:
            continue
        values = [float(c) for c in r]
        if label is not None and y is not None:
            y[i] = int(values.pop(label))
        x[i] = values
    return CsvRows(x, y, tuple(errors), header)


def _label_column(header: tuple[str, ...] | None) -> int | None:
    if header is None:
        return None
    lowered = [h.lower() for h in header]
    return next((lowered.index(c) for c in LABEL_COLUMNS if c in lowered), None)


def _row_error(row: list[str], width: int, line: int) -> str | None:
    if len(row) != width:
        return f"line {line}: expected {width} values, found {len(row)}"
    bad = next((c for c in row if not _is_number(c)), None)
    if bad is not None:
        return f"line {line}: {bad.strip()!r} is not a number"
    return None


def read_csv(path: Path) -> CsvRows:
    """Read and parse ``path``; an unreadable or empty file is an :class:`EdgeError`."""
    try:
        with path.open(newline="") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise EdgeError(f"{path}: not a readable CSV file ({e})") from e
    if not rows:
        raise EdgeError(f"{path}: the CSV file is empty")
    return parse_csv(rows, str(path))
