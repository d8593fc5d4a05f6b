"""Optimization passes, one file each; the recipe composes them in a fixed order."""

from edge_sdk.passes.base import GraphPass, PassContext, PassOutcome
from edge_sdk.passes.quantize import Calibration, QuantizeConfig

__all__ = ["Calibration", "GraphPass", "PassContext", "PassOutcome", "QuantizeConfig"]
