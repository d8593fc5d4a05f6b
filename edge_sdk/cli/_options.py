"""The shared option specs of :mod:`device_agent.cli_options` as typer options, for ``edge``.

``@broker_options()`` adds ``--broker``, ``--username``, ``--password-file``, ``--password``
(an alias that warns), ``--tls-ca``, ``--tls-cert``, ``--tls-key``, ``--keepalive`` and
``--client-id`` to a typer command, the same options ``edge-agent`` takes, and hands the
command one checked :class:`~device_agent.mqtt.BrokerOptions` in its ``broker`` parameter
(``None`` without ``--broker``).
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from device_agent.cli_help import metavar
from device_agent.cli_options import BROKER, Option, broker_values
from device_agent.config import broker_from

F = TypeVar("F", bound=Callable[..., Any])
Spec = list[tuple[str, Any, Any]]  # (parameter name, type, typer option)


def typer_param(o: Option, *, required: bool = False) -> tuple[str, Any, Any]:
    """(parameter name, type, typer option) of one option spec."""
    kind: Any = list[o.type] if o.repeat else o.type  # type: ignore[name-defined]  # built at run time
    first = f"{o.long}/--no-{o.long[2:]}" if o.negatable else o.long
    default = ... if (required or o.required) else o.default
    return o.name, kind | None, typer.Option(default, first, *o.flags[1:], help=o.help,
                                             metavar=None if o.type is bool else metavar(o))


def add_options(spec: Spec, *, into: str, build: Callable[[dict[str, Any]], Any]) -> Callable[[F], F]:
    """Add ``spec``'s options to a typer command; its parameter ``into`` receives
    ``build({parameter name: value})``. The command's other parameters stay as they are."""

    def decorate(fn: F) -> F:
        hints = typing.get_type_hints(fn)
        sig = inspect.signature(fn)
        own = [p.replace(annotation=hints.get(p.name, p.annotation), kind=inspect.Parameter.KEYWORD_ONLY)
               for p in sig.parameters.values() if p.name != into]
        added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=tp)
                 for name, tp, opt in spec]  # fmt: skip

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            kwargs[into] = build({name: kwargs.pop(name, None) for name, _, _ in spec})
            return fn(*args, **kwargs)

        wrapper.__signature__ = sig.replace(parameters=[*own, *added])  # type: ignore[attr-defined]
        wrapper.__annotations__ = {**{p.name: p.annotation for p in own}, **{n: t for n, t, _ in spec}}
        return wrapper  # type: ignore[return-value]

    return decorate


def broker_options(*, required: bool = False) -> Callable[[F], F]:
    """Add the shared broker options to a typer command whose ``broker`` parameter receives
    checked :class:`BrokerOptions` (``None`` without ``--broker``); ``required`` makes
    ``--broker`` required."""
    spec = [typer_param(o, required=required and o.name == "broker") for o in BROKER]
    return add_options(spec, into="broker", build=lambda raw: broker_from(broker_values(raw)))
