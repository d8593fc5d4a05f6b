"""Channel pruning for Keras models: dependency analysis, criteria, selection, rebuild."""

from edge_sdk.pruning.criteria import CRITERIA, Criterion, CriterionKind, Evidence, EvidenceKind
from edge_sdk.pruning.graph import Analysis, Node, analyze, nodes_from_keras

__all__ = [
    "CRITERIA",
    "Analysis",
    "Criterion",
    "CriterionKind",
    "Evidence",
    "EvidenceKind",
    "Node",
    "analyze",
    "nodes_from_keras",
]
