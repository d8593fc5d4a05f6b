"""Report sections beyond the before/after table: the search's candidates and Pareto
front, and the held-out figures. Plain lines, rendered by ``edge_sdk.report.render`` in the
terminal and in Markdown (kept apart so the table layout can change independently)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from edge_sdk.recipe.result import Report


def search_lines(report: Report) -> list[str]:
    """The shipped-form search's candidates, when a search ran."""
    from edge_sdk.recipe.shipped_search import candidate_lines

    found = report.recipe.get("search_result") or {}
    return candidate_lines(found) if found.get("kind") == "shipped" else []


def held_out_lines(report: Report) -> list[str]:
    """Where the final figures come from, the paired drops, and plain warnings."""
    from edge_sdk.measure.holdout import lines

    return [] if report.held_out is None else lines(report.held_out)


def has_front(report: Report) -> bool:
    """Whether the report holds a shipped-form search (and so a Pareto front to draw)."""
    return bool((report.recipe.get("search_result") or {}).get("kind") == "shipped")


def front_panel(ax: Axes, report: Report) -> None:
    """Bytes against accuracy of every candidate: the front joined, the chosen point marked."""
    found = report.recipe["search_result"]
    rows = {c["index"]: c for c in found["candidates"]}
    ax.scatter([c["bytes"] / 1024 for c in rows.values()], [c["accuracy"] for c in rows.values()],
               s=12, color="0.6", label="candidates")
    front = [rows[i] for i in found["front"]]
    ax.plot([c["bytes"] / 1024 for c in front], [c["accuracy"] for c in front], "o-", ms=4,
            label="Pareto front")
    best = rows[found["chosen_index"]]
    ax.scatter([best["bytes"] / 1024], [best["accuracy"]], s=90, marker="*", color="red", zorder=3,
               label=f"chosen #{best['index']}")
    ax.set_xlabel("stored model (KB)")
    ax.set_ylabel("accuracy % (selection split)")
    ax.set_title("search: bytes vs accuracy")
    ax.legend(fontsize=7)
