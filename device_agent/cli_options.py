"""Option sets that several commands share, defined once.

:func:`add_options` adds a list of typer options to a command and hands it their values
as one parameter. The broker options are one such set:

``@broker_options()`` adds ``--broker``, ``--username``, ``--password-file``,
``--password`` (an alias that warns), ``--tls-ca``, ``--tls-cert``, ``--tls-key``,
``--keepalive`` and ``--client-id`` to a typer command and hands the command one value
in its ``broker`` parameter: a :class:`~device_agent.mqtt.BrokerOptions` (or ``None``
without ``--broker``), or with ``as_values=True`` the dict of the options that were
given (the agent merges it with its config file and environment).
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from device_agent.config import PASSWORD_ENV, read_password

if TYPE_CHECKING:  # imported where options are built: `edge-agent run` without a broker skips it
    from device_agent.mqtt import BrokerOptions

F = TypeVar("F", bound=Callable[..., Any])

URL_HELP = "Broker URL: mqtt://HOST[:PORT], or mqtts://HOST[:PORT] for TLS"
PASSWORD_WARNING = (
    "warning: --password shows the password in the process list; "
    f"prefer --password-file FILE or the environment variable {PASSWORD_ENV}"
)


def _params(required: bool) -> list[tuple[str, Any, Any]]:
    """(parameter name, type, typer option) of the shared broker options."""
    return [
        ("broker", str | None, typer.Option(... if required else None, "--broker", help=URL_HELP)),
        ("username", str | None, typer.Option(None, "--username", help="Broker user name")),
        ("password_file", Path | None, typer.Option(
            None, "--password-file",
            help=f"File whose first line is the broker password (or set {PASSWORD_ENV})")),
        ("password", str | None, typer.Option(
            None, "--password", help="Broker password (shows in the process list: prefer --password-file)")),
        ("tls_ca", Path | None, typer.Option(None, "--tls-ca", help="CA certificate (PEM) to check the broker")),
        ("tls_cert", Path | None, typer.Option(None, "--tls-cert", help="Client certificate (PEM)")),
        ("tls_key", Path | None, typer.Option(None, "--tls-key", help="Client private key (PEM)")),
        ("keepalive", int | None, typer.Option(None, "--keepalive", help="MQTT keepalive seconds (default 30)")),
        ("client_id", str | None, typer.Option(None, "--client-id", help="MQTT client id (ACLs may name it)")),
    ]


# flag parameter → BrokerOptions field
FIELDS = {"broker": "url", "username": "username", "password": "password", "tls_ca": "ca_file",
          "tls_cert": "cert_file", "tls_key": "key_file", "keepalive": "keepalive",
          "client_id": "client_id", "password_file": "password_file"}  # fmt: skip


def given_values(raw: dict[str, Any]) -> dict[str, Any]:
    """The flags that were given, keyed by BrokerOptions field (``password_file`` kept as is)."""
    if raw.get("password") is not None:
        typer.echo(PASSWORD_WARNING, err=True)
    return {FIELDS[k]: (str(v) if isinstance(v, Path) else v) for k, v in raw.items() if v is not None}


def options_from_values(values: dict[str, Any], *, client_id: str = "") -> BrokerOptions | None:
    """Given flag values (and the environment) → checked :class:`BrokerOptions`; None without a URL."""
    if not values.get("url"):
        return None
    v = dict(values)
    password_file = v.pop("password_file", None)
    if v.get("password") is None:
        v["password"] = read_password(password_file)
    v["client_id"] = v.get("client_id") or client_id
    from device_agent.mqtt import BrokerOptions

    return BrokerOptions(**v).check()


Spec = list[tuple[str, Any, Any]]  # (parameter name, type, typer option)


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


def broker_options(*, required: bool = False, as_values: bool = False) -> Callable[[F], F]:
    """Add the shared broker options to a typer command whose ``broker`` parameter receives
    checked :class:`BrokerOptions` (``None`` without ``--broker``), or with ``as_values``
    the dict of the options given."""

    def build(raw: dict[str, Any]) -> Any:
        values = given_values(raw)
        return values if as_values else options_from_values(values)

    return add_options(_params(required), into="broker", build=build)


# --- the agent's options: (parameter, type, typer option) and the config key each sets ---
def _opt(*decls: str, help: str) -> Any:
    return typer.Option(None, *decls, help=help)


AGENT_COMMON: list[tuple[str, Any, Any, str]] = [
    ("config", Path | None, _opt("--config", help="Agent config file (TOML; or set EDGE_AGENT_CONFIG)"), ""),
    ("device_id", str | None, _opt("--device-id", help="This device's id ([A-Za-z0-9_-])"), "agent.device_id"),
    ("fleet", str | None, _opt("--fleet", help="Fleet id ([A-Za-z0-9_-]; the default fleet is named default)"),
     "agent.fleet"),
    ("store", Path | None, _opt("--store", help="The model store directory"), "agent.store"),
    ("key", list[Path] | None, _opt("--key", help="Trusted public key (file or dir of *.pub); repeatable"),
     "agent.keys"),
]
AGENT_SERVE: list[tuple[str, Any, Any, str]] = [
    ("source", str | None, _opt(
        "--source", help="file:DATA.npz|csv, sim:imu, sim:vibration, dir:PATH, mqtt:TOPIC[?broker=URL], stdin"),
     "serve.source"),
    ("rate", float | None, _opt("--rate", help="Replay at this many readings per second"), "serve.rate"),
    ("runtime", str | None, _opt("--runtime", help="Force a runtime (litert, onnxruntime, ...)"), "serve.runtime"),
    ("threads", int | None, _opt("--threads", help="Runtime threads (LiteRT: XNNPACK's too)"), "serve.threads"),
    ("provider", list[str] | None, _opt(
        "--provider", help="ONNX Runtime execution provider, in order of preference (repeat): tensorrt, "
        "cuda, openvino, cpu; those not installed are skipped with a warning, CPU is the last resort"),
     "serve.providers"),
    ("delegate", str | None, _opt(
        "--delegate", help="LiteRT external delegate library (e.g. libedgetpu.so.1); if it does not load, "
        "a warning and the CPU"), "serve.delegate"),
    ("limit", int | None, _opt("--limit", help="Stop after this many readings (answered or not)"), "serve.limit"),
    ("quiet", bool | None, _opt("--quiet/--no-quiet", "-q", help="Print no result lines"), "serve.quiet"),
    ("cache", str | None, _opt("--cache", help="Input cache: off, exact or near:TOLERANCE (default off)"),
     "serve.cache"),
    ("cache_mb", float | None, _opt("--cache-mb", help="Cache memory cap in MiB (default 32)"), "serve.cache_mb"),
    ("exit_threshold", list[str] | None, _opt(
        "--exit-threshold", help="Early-exit threshold in [0,1] for every exit, or STAGE:VALUE"),
     "serve.exit_thresholds"),
    ("batch", int | None, _opt("--batch", help="Micro-batch up to N inputs (default 1)"), "serve.batch"),
    ("batch_ms", float | None, _opt("--batch-ms", help="...or until T ms passed, whichever first (default 5)"),
     "serve.batch_ms"),
    ("backlog_batch", int | None, _opt(
        "--backlog-batch",
        help="Run up to N already-queued inputs together (file replay without --rate); 0 = off (default 32)"),
     "serve.backlog_batch"),
    ("sink", str | None, _opt(
        "--sink", help="Results to stdout, mqtt (the --broker connection) or mqtt://HOST:PORT (default stdout)"),
     "serve.sink"),
    ("results_qos", int | None, _opt("--results-qos", help="QoS (0 or 1) of MQTT results (default 0)"),
     "serve.results_qos"),
    ("telemetry_interval", float | None, _opt(
        "--telemetry-interval", help="Telemetry window seconds (default 10)"), "telemetry.interval"),
    ("qos", int | None, _opt("--qos", help="Telemetry QoS (0 or 1) (default 1)"), "telemetry.qos"),
    ("outbox", Path | None, _opt("--outbox", help="Telemetry outbox (SQLite) path"), "telemetry.outbox"),
]
AGENT_UPDATE: list[tuple[str, Any, Any, str]] = [
    ("isolate", bool | None, _opt("--isolate/--no-isolate", help="Health-check new models in a child process"),
     "update.isolate"),
    ("allow_downgrade", bool | None, _opt("--allow-downgrade/--no-allow-downgrade",
                                          help="Accept an older version"), "update.allow_downgrade"),
    ("probation_samples", int | None, _opt(
        "--probation-samples", help="Results before judging a new model (default 200)"),
     "update.probation_samples"),
]


@dataclass(frozen=True)
class AgentFlags:
    """The agent options given on the command line: the config file and ``section.key`` values."""

    config: Path | None
    values: dict[str, Any]


def agent_options(*groups: list[tuple[str, Any, Any, str]]) -> Callable[[F], F]:
    """Add the agent's options (``AGENT_COMMON``, ``AGENT_SERVE``, ``AGENT_UPDATE``) to a
    command; its ``flags`` parameter receives :class:`AgentFlags`."""
    spec = [row for g in groups for row in g]
    keys = {name: key for name, _, _, key in spec}

    def build(raw: dict[str, Any]) -> AgentFlags:
        values = {keys[n]: (tuple(v) if isinstance(v, list) else v) for n, v in raw.items()
                  if n != "config" and v is not None and v != []}  # fmt: skip
        return AgentFlags(raw.get("config"), values)

    return add_options([(n, t, o) for n, t, o, _ in spec], into="flags", build=build)
