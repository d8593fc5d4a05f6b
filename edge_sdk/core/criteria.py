"""Criteria that rank channels: a small protocol and the usual ones (pure numpy), shared
by the Keras and the ONNX pruner.

A criterion sees one piece of :class:`Evidence` at a time (a producer's kernel viewed
as one row per output channel, a batch norm's scale per channel, or, on the ONNX path,
each channel's share of the output energy of a layer that reads it) and returns one
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
    # rows: channels as one consumer reads them on calibration data: E[x²]·‖w‖², as a share
    CONSUMER_ENERGY = "consumer_energy"


@dataclass(frozen=True)
class Evidence:
    """One layer's per-channel weights, one row per output channel, for a criterion to score."""

    kind: EvidenceKind
    layer: str
    values: np.ndarray  # shape (channels, k)


class ChannelCriterion(Protocol):
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


@dataclass(frozen=True)
class ConsumerEnergy:
    """A channel's share of the output energy of the layers that read it, measured on
    calibration data (ThiNet-style; the ONNX pruner's criterion, since it refits consumers)."""

    name: str = "energy"

    def score(self, evidence: Evidence) -> np.ndarray | None:
        """The measured shares as they are; None for kernel or batch-norm evidence."""
        if evidence.kind is not EvidenceKind.CONSUMER_ENERGY:
            return None
        return evidence.values[:, 0]


class CriterionKind(str, Enum):
    """The criteria by name, as configs and flags give them."""

    L1 = "l1"
    L2 = "l2"
    BN_SCALE = "bn_scale"
    ENERGY = "energy"


CRITERIA: dict[CriterionKind, ChannelCriterion] = {
    CriterionKind.L1: L1Norm(),
    CriterionKind.L2: L2Norm(),
    CriterionKind.BN_SCALE: BNScale(),
    CriterionKind.ENERGY: ConsumerEnergy(),
}


def normalized(scores: np.ndarray) -> np.ndarray:
    """Scores divided by their mean, so layers of different scale can be summed and compared."""
    mean = float(np.mean(scores)) if scores.size else 0.0
    return scores / mean if mean > 0 else np.ones_like(scores, dtype=np.float64)
