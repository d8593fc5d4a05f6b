"""Errors a person can act on.

Every error the agent or the SDK raises for bad input derives from :class:`EdgeError`;
the CLIs print its message on one line and exit non-zero.
"""

from __future__ import annotations


class EdgeError(Exception):
    """A failure caused by input the user can fix: the message names what was wrong."""


class BundleError(EdgeError):
    """A bundle was rejected: malformed, tampered, unsigned, too large or incompatible."""


class RuntimeLoadError(EdgeError):
    """No runtime could load a model file."""


class InputError(EdgeError):
    """An input tensor does not fit the model (shape, dtype, NaN)."""
