"""``edge optimize --pick N``: ship another point of the last search's front, no new search.

The ``--max-drop`` search leaves its Pareto front beside the bundle in
``NAME.candidates/`` (one model file per front candidate, as it ships, and
``index.json`` with every candidate's measurements). Picking one writes
``NAME.edgepkg`` from that file and records the candidate in the manifest; the
search's figures are the selection split's, as the search measured them.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from device_agent.errors import EdgeError
from device_agent.protocol.manifest import Compression, ModelFormat
from edge_sdk.bundle.assembly import candidates_dir


def read_index(out: Path) -> tuple[Path, dict[str, Any]]:
    """The candidates folder for bundle ``out`` and its ``index.json``."""
    folder = candidates_dir(out)
    index = folder / "index.json"
    if not index.is_file():
        raise EdgeError(f"--pick: no {folder.name}/index.json beside {out}; run the --max-drop search "
                        f"with -o {out} first")
    try:
        return folder, json.loads(index.read_text())
    except (OSError, ValueError) as e:
        raise EdgeError(f"--pick: {index} is not a readable index ({e})") from None


def pick(out: Path, n: int, *, name: str, version: str) -> dict[str, Any]:
    """Write ``out`` from front candidate ``n``; returns that candidate's row."""
    from device_agent.runtimes import load_model
    from edge_sdk.bundle.writer import ModelPayload, build_bundle

    folder, index = read_index(out)
    if n not in index["front"]:
        raise EdgeError(f"--pick {n}: not on the front of {folder.name}; pick one of "
                        f"{', '.join(map(str, index['front']))}")
    fmt = ModelFormat(index["format"])
    path = folder / f"{n}.{fmt.value}"
    if not path.is_file():
        raise EdgeError(f"--pick {n}: {path} is missing")
    row = next(c for c in index["candidates"] if c["index"] == n)
    model = load_model(path)
    payload = ModelPayload(path.read_bytes(), fmt, inputs=model.inputs, outputs=model.outputs)
    summary = {"recipe": {"picked": row, "search_result": {k: index[k] for k in ("objective", "front")},
                          "from": str(folder)}}
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp:
        staged = Path(tmp) / out.name
        build_bundle(staged, name=name, version=version, models=[payload],
                     compression=Compression(index["compression"]), labels=tuple(index["labels"]),
                     optimization=summary)
        staged.chmod(0o644)
        os.replace(staged, out)
    return dict(row)
