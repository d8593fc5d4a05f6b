"""Sources by URI scheme, through an explicit registry: ``file:``, later ``sim:``, ``dir:``, ``mqtt:``, ``stdin``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs

from device_agent.errors import EdgeError
from device_agent.sources.base import Reading, Source


def _file(rest: str, params: dict[str, str]) -> Source:
    from device_agent.sources.file import FileSource

    rate = float(params["rate"]) if "rate" in params else None
    return FileSource(Path(rest), rate=rate, loop=params.get("loop") == "1")


# scheme → factory(rest, params). Add a kind by adding a module and one entry here.
REGISTRY: dict[str, Callable[[str, dict[str, str]], Source]] = {
    "file": _file,
}


def open_source(uri: str, **params: str) -> Source:
    """``"file:test.npz?rate=50"`` → a source. Keyword params override query params."""
    scheme, _, rest = uri.partition(":")
    if scheme not in REGISTRY:
        raise EdgeError(f"unknown source {uri!r}; expected one of: {', '.join(s + ':' for s in REGISTRY)}")
    rest, _, query = rest.partition("?")
    merged = {k: v[-1] for k, v in parse_qs(query).items()}
    merged.update({k: v for k, v in params.items() if v is not None})
    return REGISTRY[scheme](rest, merged)


__all__ = ["REGISTRY", "Reading", "Source", "open_source"]
