"""The host side: optimize a Keras or ONNX model into a small, signed bundle, roll it out
over the air, and watch the fleet that runs it.

The Python API is what the ``edge`` commands run::

    import edge_sdk
    report = edge_sdk.optimize("model.keras", "train.npz", out="model.edgepkg",
                               recipe=edge_sdk.make_recipe(prune=0.5, distill=True, int8=True))

Importing this package is cheap: each name below is imported on first use, and TensorFlow
and ONNX load only where a model needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from device_agent.errors import BundleError, EdgeError

if TYPE_CHECKING:
    from edge_sdk.api import default_name, make_recipe, optimize
    from edge_sdk.bundle.pack import PackResult, PackSpec, pack
    from edge_sdk.bundle.signing import new_key_pair, sign_bundle
    from edge_sdk.measure.evaluate import EvalConfig, EvalResult, evaluate
    from edge_sdk.model.data import Dataset, load_dataset
    from edge_sdk.model.inspect import describe as inspect
    from edge_sdk.passes.early_exit.keras import EarlyExitConfig
    from edge_sdk.passes.quantize.base import QuantizeConfig
    from edge_sdk.recipe.cascade_export import write_cascade_bundle
    from edge_sdk.recipe.pipeline import Recipe, Target
    from edge_sdk.recipe.result import Report

__version__ = "0.1.0"

# name → (module, attribute): resolved on first use by __getattr__.
_LAZY = {
    "optimize": ("edge_sdk.api", "optimize"),
    "make_recipe": ("edge_sdk.api", "make_recipe"),
    "default_name": ("edge_sdk.api", "default_name"),
    "Recipe": ("edge_sdk.recipe.pipeline", "Recipe"),
    "Target": ("edge_sdk.recipe.pipeline", "Target"),
    "Report": ("edge_sdk.recipe.result", "Report"),
    "QuantizeConfig": ("edge_sdk.passes.quantize.base", "QuantizeConfig"),
    "EarlyExitConfig": ("edge_sdk.passes.early_exit.keras", "EarlyExitConfig"),
    "write_cascade_bundle": ("edge_sdk.recipe.cascade_export", "write_cascade_bundle"),
    "Dataset": ("edge_sdk.model.data", "Dataset"),
    "load_dataset": ("edge_sdk.model.data", "load_dataset"),
    "inspect": ("edge_sdk.model.inspect", "describe"),
    "evaluate": ("edge_sdk.measure.evaluate", "evaluate"),
    "EvalConfig": ("edge_sdk.measure.evaluate", "EvalConfig"),
    "EvalResult": ("edge_sdk.measure.evaluate", "EvalResult"),
    "pack": ("edge_sdk.bundle.pack", "pack"),
    "PackSpec": ("edge_sdk.bundle.pack", "PackSpec"),
    "PackResult": ("edge_sdk.bundle.pack", "PackResult"),
    "sign_bundle": ("edge_sdk.bundle.signing", "sign_bundle"),
    "new_key_pair": ("edge_sdk.bundle.signing", "new_key_pair"),
}

__all__ = [
    "BundleError",
    "Dataset",
    "EarlyExitConfig",
    "EdgeError",
    "EvalConfig",
    "EvalResult",
    "PackResult",
    "PackSpec",
    "QuantizeConfig",
    "Recipe",
    "Report",
    "Target",
    "__version__",
    "default_name",
    "evaluate",
    "inspect",
    "load_dataset",
    "make_recipe",
    "new_key_pair",
    "optimize",
    "pack",
    "sign_bundle",
    "write_cascade_bundle",
]


def __getattr__(name: str) -> Any:
    """The public names, imported when first used (PEP 562)."""
    if name not in _LAZY:
        raise AttributeError(f"module 'edge_sdk' has no attribute {name!r}")
    module, attr = _LAZY[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value
