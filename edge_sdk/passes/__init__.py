"""Optimization passes, one file each; the recipe composes them in a fixed order."""

from edge_sdk.passes.base import GraphPass, PassContext, PassOutcome

__all__ = ["GraphPass", "PassContext", "PassOutcome"]
