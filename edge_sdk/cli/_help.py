"""Help that reads well for the typer commands of ``edge``: each command's examples, real
metavars (``--db FILE|URL`` rather than ``--db TEXT``; the table is
:mod:`device_agent.cli_help`'s, which ``edge-agent`` uses too) and help for options defined
without any, set once on the built command tree (:func:`polish`); and arguments' help kept
(:func:`keep_argument_help`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from device_agent.cli_help import METAVARS

GENERIC_METAVARS = {"TEXT": "VALUE", "INTEGER": "N", "FLOAT": "X", "INTEGER RANGE": "N",
                    "FLOAT RANGE": "X"}
# Help for options defined without any (the same option means the same on every command).
FALLBACK_HELP = {"--fleet": "Fleet id ([A-Za-z0-9_-])"}


def keep_argument_help() -> None:
    """Show arguments' help in ``--help``. typer's ``TyperArgument`` stores ``help`` and then
    calls click's ``Argument.__init__``, which (click >= 8.2) sets it again from its own
    ``help`` parameter, ``None``. Patched only where that happens, and only once."""
    from typer.core import TyperArgument

    if getattr(TyperArgument, "_edge_keeps_help", False):
        return
    try:
        probe = TyperArgument(param_decls=["probe"], help="probe", nargs=1)
    except TypeError:  # an older typer/click pair (Debian's) with other signatures: leave it be
        return
    if probe.help == "probe":
        return
    init = TyperArgument.__init__

    def __init__(self: Any, *args: Any, help: str | None = None, **kwargs: Any) -> None:
        init(self, *args, help=help, **kwargs)
        self.help = help

    TyperArgument.__init__ = __init__  # type: ignore[method-assign]
    TyperArgument._edge_keeps_help = True  # type: ignore[attr-defined]
    # That click also lists documented arguments itself ("Positional arguments"), which
    # typer's own "Arguments" section already does.
    from typer.core import TyperCommand

    if hasattr(TyperCommand, "format_arguments"):
        TyperCommand.format_arguments = lambda self, ctx, formatter: None  # type: ignore[method-assign]




def polish(group: Any, examples: Mapping[str, tuple[str, ...]], prefix: str = "") -> None:
    """Examples, metavars and missing option help, for every command below ``group``."""
    for name, cmd in getattr(group, "commands", {}).items():
        path = f"{prefix}{name}"
        lines = examples.get(path)
        if lines and not cmd.epilog:
            # "\b" keeps click from re-wrapping the lines into one paragraph.
            cmd.epilog = "Examples:\n\n\b\n" + "\n".join(f"  {line}" for line in lines)
        for param in getattr(cmd, "params", []):
            _polish_option(param)
        polish(cmd, examples, f"{path} ")


def _polish_option(param: Any) -> None:
    longs = [o for o in getattr(param, "opts", []) if o.startswith("--")]
    if not longs or getattr(param, "is_flag", False) or param.param_type_name != "option":
        if longs and not getattr(param, "help", None) and longs[0] in FALLBACK_HELP:
            param.help = FALLBACK_HELP[longs[0]]
        return
    if not param.help and longs[0] in FALLBACK_HELP:
        param.help = FALLBACK_HELP[longs[0]]
    if param.metavar is None:
        kind = getattr(param.type, "name", "").upper()
        if longs[0] in METAVARS and kind in GENERIC_METAVARS:
            param.metavar = METAVARS[longs[0]]
        elif kind in GENERIC_METAVARS:
            param.metavar = GENERIC_METAVARS[kind]


