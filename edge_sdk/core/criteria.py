"""Criteria that rank channels: a small protocol and the three usual ones (pure numpy).

A criterion sees one piece of :class:`Evidence` at a time (a producer's kernel viewed
as one row per output channel, or a batch norm's scale per channel) and returns one
score per channel, or None when that evidence says nothing to it. Higher = keep.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol

import numpy as np


class EvidenceKind(str, Enum):
    """Which weights a piece of evidence holds, so a criterion can tell what it can score."""

    KERNEL = "kernel"  # rows: output channels of a Conv/Dense kernel
    BN_SCALE = "bn_scale"  # rows: channels of a BatchNormalization's gamma


@dataclass(frozen=True)
class Evidence:
    """One layer's per-channel weights, one row per output channel, for a criterion to score."""

    kind: EvidenceKind
    layer: str
    values: np.ndarray  # shape (channels, k)


class Criterion(Protocol):
    """Scores channels from one piece of evidence; None means "not my kind of evidence"."""

    @property
    def name(self) -> str:
        """The key this criterion is chosen by and recorded under."""

    def score(self, evidence: Evidence) -> np.ndarray | None:
        """One score per channel (higher keeps it), or None for evidence of another kind."""


@dataclass(frozen=True)
class L1Norm:
    """Sum of absolute kernel weights per output channel (the usual magnitude criterion)."""

    name: str = "l1"

    def score(self, evidence: Evidence) -> np.ndarray | None:
        """Per-channel L1 norm of a kernel; None for batch-norm evidence."""
        if evidence.kind is not EvidenceKind.KERNEL:
            return None
        return np.abs(evidence.values).sum(axis=1)


@dataclass(frozen=True)
class L2Norm:
    """Euclidean norm of kernel weights per output channel."""

    name: str = "l2"

    def score(self, evidence: Evidence) -> np.ndarray | None:
        """Per-channel L2 norm of a kernel; None for batch-norm evidence."""
        if evidence.kind is not EvidenceKind.KERNEL:
            return None
        return np.sqrt(np.square(evidence.values).sum(axis=1))


@dataclass(frozen=True)
class BNScale:
    """|gamma| of the batch norm after a producer (network slimming)."""

    name: str = "bn_scale"

    def score(self, evidence: Evidence) -> np.ndarray | None:
        """Per-channel |gamma|; None for kernel evidence."""
        if evidence.kind is not EvidenceKind.BN_SCALE:
            return None
        return np.abs(evidence.values[:, 0])


class CriterionKind(str, Enum):
    """The ``--criterion`` choices, each a key of :data:`CRITERIA`."""

    L1 = "l1"
    L2 = "l2"
    BN_SCALE = "bn_scale"


CRITERIA: dict[CriterionKind, Criterion] = {
    CriterionKind.L1: L1Norm(),
    CriterionKind.L2: L2Norm(),
    CriterionKind.BN_SCALE: BNScale(),
}


def normalized(scores: np.ndarray) -> np.ndarray:
    """Scores divided by their mean, so layers of different scale can be summed and compared."""
    mean = float(np.mean(scores)) if scores.size else 0.0
    return scores / mean if mean > 0 else np.ones_like(scores, dtype=np.float64)
