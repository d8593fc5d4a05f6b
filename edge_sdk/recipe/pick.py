"""``edge optimize --pick N``: ship another point of the last search's front, no new search.

The ``--max-drop`` search leaves its Pareto front beside the bundle in
``NAME.candidates/`` (one model file per front candidate, as it ships, and
``index.json`` with every candidate's measurements, the budget, the target format and
compression, and the input model's sha256). Picking one runs the rest of
``edge optimize`` on that file as it is: its accuracy on the selection split against
the budget (over it: refused, or with ``--force`` shipped with the overrun recorded),
the held-out figures, the validation set and the three report files, as for the
search's own choice.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from device_agent.errors import EdgeError
from edge_sdk.bundle.assembly import candidates_dir


def read_index(out: Path) -> tuple[Path, dict[str, Any]]:
    """The candidates folder for bundle ``out`` and its ``index.json``."""
    folder = candidates_dir(out)
    index = folder / "index.json"
    if not index.is_file():
        raise EdgeError(f"--pick: no {folder.name}/index.json beside {out}; run the --max-drop search "
                        f"with -o {out} first")
    try:
        found = json.loads(index.read_text())
        if not isinstance(found, dict) or not {"front", "candidates", "format", "compression"} <= set(found):
            raise ValueError("expected front, candidates, format and compression")
        return folder, found
    except (OSError, ValueError) as e:
        raise EdgeError(f"--pick: {index} is not a readable index ({e})") from None


def model_sha256(path: Path) -> str | None:
    """The model file's sha256 (a SavedModel folder: ``None``, not compared)."""
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


# A front candidate: its kept model file, its row of the search, the whole index.
Picked = tuple[Path, dict[str, Any], dict[str, Any]]


def candidate(out: Path, n: int, model: Path) -> Picked:
    """Front candidate ``n`` of ``out``'s search: (its model file, its row, the index).
    Refused when ``n`` is not on the front, its file is gone, or the search was run on
    another model than ``model``."""
    folder, index = read_index(out)
    if n not in index["front"]:
        raise EdgeError(f"--pick {n}: not on the front of {folder.name}; pick one of "
                        f"{', '.join(map(str, sorted(index['front'])))}")
    path = folder / f"{n}.{index['format']}"
    if not path.is_file():
        raise EdgeError(f"--pick {n}: {path} is missing")
    searched = index.get("model_sha256")
    if searched is not None and model_sha256(model) not in (None, searched):
        raise EdgeError(f"--pick {n}: {folder.name} was searched from another model than {model} "
                        "(its sha256 differs); run the --max-drop search on this one first")
    row = next(c for c in index["candidates"] if c["index"] == n)
    return path, dict(row), index
