"""Report sections beyond the before/after table: the search's candidates and Pareto
front, and the held-out figures. Plain lines, rendered by ``edge_sdk.report`` in the
terminal and in Markdown (kept apart so the table layout can change independently)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge_sdk.report import Report


def search_lines(report: Report) -> list[str]:
    """The shipped-form search's candidates, when a search ran."""
    from edge_sdk.shipped import candidate_lines

    found = report.recipe.get("search_result") or {}
    return candidate_lines(found) if found.get("kind") == "shipped" else []


def held_out_lines(report: Report) -> list[str]:
    """Where the final figures come from, the paired drops, and plain warnings."""
    from edge_sdk.holdout import lines

    return [] if report.held_out is None else lines(report.held_out)
