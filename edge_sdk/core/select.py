"""Choosing which channel units to remove, from an analysis and channel scores (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from edge_sdk.core.channel_graph import Analysis
from edge_sdk.core.criteria import ChannelCriterion, Evidence, L1Norm, normalized


@dataclass(frozen=True)
class GroupPlan:
    """One set of producers whose channels go together, and how many units it loses."""

    producers: tuple[str, ...]
    units: int
    removed: int


@dataclass(frozen=True)
class Selection:
    """The units chosen for removal and, per producer group, how many of its units go."""

    removed: frozenset[int]
    groups: tuple[GroupPlan, ...]


def unit_scores(
    a: Analysis, evidence: Sequence[tuple[Evidence, Sequence[int]]], criterion: ChannelCriterion
) -> dict[int, float]:
    """Sum each unit's normalized scores over every piece of evidence that touches it.

    ``evidence`` pairs each piece with the slot of each of its rows. Units the criterion
    has nothing to say about (BN scale on a Dense layer) are scored by L1 instead.
    """
    scores = _accumulate(a, evidence, criterion)
    missing = set(a.units()) - set(scores)
    if missing:
        fallback = _accumulate(a, evidence, L1Norm())
        scores.update({u: fallback.get(u, 0.0) for u in missing})
    return scores


def _accumulate(
    a: Analysis, evidence: Sequence[tuple[Evidence, Sequence[int]]], criterion: ChannelCriterion
) -> dict[int, float]:
    out: dict[int, float] = {}
    for ev, slots in evidence:
        s = criterion.score(ev)
        if s is None:
            continue
        for slot, v in zip(slots, normalized(np.asarray(s, dtype=np.float64)), strict=True):
            u = a.unit(slot)
            out[u] = out.get(u, 0.0) + float(v)
    return out


def groups_of(a: Analysis) -> dict[tuple[str, ...], list[int]]:
    """Prunable units grouped by the producers that own them."""
    out: dict[tuple[str, ...], list[int]] = {}
    for unit, producers in a.units().items():
        out.setdefault(tuple(sorted(producers)), []).append(unit)
    return out


def choose(
    a: Analysis,
    scores: Mapping[int, float],
    *,
    ratio: float,
    layer_ratios: Mapping[str, float],
    global_rank: bool,
) -> Selection:
    """Remove the lowest-scored units: ``ratio`` of each group, or of all units at once.

    A group named in ``layer_ratios`` (by any of its producers) uses that ratio. Every
    group keeps at least one unit.
    """
    groups = groups_of(a)
    if global_rank:
        removed = _choose_global(groups, scores, ratio)
    else:
        removed = set()
        for producers, units in groups.items():
            r = max((layer_ratios[p] for p in producers if p in layer_ratios), default=ratio)
            k = min(int(np.floor(r * len(units) + 1e-9)), len(units) - 1)
            removed.update(sorted(units, key=lambda u: (scores.get(u, 0.0), u))[:k])
    plans = tuple(
        GroupPlan(p, len(units), sum(u in removed for u in units)) for p, units in groups.items()
    )
    return Selection(frozenset(removed), plans)


def _choose_global(
    groups: Mapping[tuple[str, ...], list[int]], scores: Mapping[int, float], ratio: float
) -> set[int]:
    every = [(scores.get(u, 0.0), u, g) for g, units in groups.items() for u in units]
    budget = int(np.floor(ratio * len(every) + 1e-9))
    left = {g: len(units) for g, units in groups.items()}
    removed: set[int] = set()
    for _score, u, g in sorted(every):
        if len(removed) >= budget:
            break
        if left[g] > 1:
            removed.add(u)
            left[g] -= 1
    return removed
