"""The command-line options, each defined once, in a form no CLI framework owns.

An :class:`Option` or :class:`Argument` says what a parameter is called, its type, help,
metavar and the config key it sets. ``device_agent.cli_parser`` turns them into argparse
arguments for ``edge-agent``; ``edge_sdk.cli._options`` into the options of ``edge``'s
commands, which share :data:`BROKER`. :data:`AGENT_COMMON`, :data:`AGENT_SERVE` and
:data:`AGENT_UPDATE` are the agent's (``run``, ``daemon``, ``listen``), each with the
config key the flag overrides (precedence: flag > ``EDGE_AGENT_*`` > ``--config``).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device_agent.config import PASSWORD_ENV


@dataclass(frozen=True, kw_only=True)
class Option:
    """One option. ``name`` is the parameter the value arrives in; ``flags`` the spellings
    (the first the long one); ``metavar`` None takes cli_help's for the flag or type."""

    name: str
    flags: tuple[str, ...]
    help: str
    type: type = str  # str, int, float, Path or bool (a flag)
    metavar: str | None = None
    key: str = ""  # the agent config key it sets ("serve.rate"); "" if none
    repeat: bool = False  # may be given again: the values arrive as a list
    negatable: bool = False  # a bool flag with a --no- form (None when neither is given)
    required: bool = False
    default: Any = None

    @property
    def long(self) -> str:
        """The long spelling (``--rate``)."""
        return self.flags[0]


@dataclass(frozen=True, kw_only=True)
class Argument:
    """One positional argument; ``metavar`` is how usage names it (``BUNDLE``)."""

    name: str
    help: str
    metavar: str
    type: type = str
    required: bool = True


Param = Option | Argument

URL_HELP = "Broker URL: mqtt://HOST[:PORT], or mqtts://HOST[:PORT] for TLS"
PASSWORD_WARNING = (
    "warning: --password shows the password in the process list; "
    f"prefer --password-file FILE or the environment variable {PASSWORD_ENV}"
)

# The broker connection, shared by `edge-agent run/daemon/listen` and the `edge` commands that
# talk MQTT. The key's last part is the BrokerOptions field (password_file: read, not kept).
BROKER: tuple[Option, ...] = (
    Option(name="broker", flags=("--broker",), help=URL_HELP, key="broker.url"),
    Option(name="username", flags=("--username",), help="Broker user name", key="broker.username"),
    Option(name="password_file", flags=("--password-file",), type=Path, metavar="FILE",
           help=f"File whose first line is the broker password (or set {PASSWORD_ENV})",
           key="broker.password_file"),
    Option(name="password", flags=("--password",), key="broker.password",
           help="Broker password (shows in the process list: prefer --password-file)"),
    Option(name="tls_ca", flags=("--tls-ca",), type=Path, help="CA certificate (PEM) to check the broker",
           key="broker.ca_file"),
    Option(name="tls_cert", flags=("--tls-cert",), type=Path, help="Client certificate (PEM)",
           key="broker.cert_file"),
    Option(name="tls_key", flags=("--tls-key",), type=Path, help="Client private key (PEM)",
           key="broker.key_file"),
    Option(name="keepalive", flags=("--keepalive",), type=int, help="MQTT keepalive seconds (default 30)",
           key="broker.keepalive"),
    Option(name="client_id", flags=("--client-id",), help="MQTT client id (ACLs may name it)",
           key="broker.client_id"),
)  # fmt: skip


def broker_values(given: Mapping[str, Any]) -> dict[str, Any]:
    """The broker options given ({parameter name: value}, None = not given; other names
    ignored) → {BrokerOptions field: value}, paths as text (``password_file`` is read later).
    ``--password`` warns: it shows in the process list."""
    fields = {o.name: o.key.partition(".")[2] for o in BROKER}
    if given.get("password") is not None:
        print(PASSWORD_WARNING, file=sys.stderr)
    return {fields[k]: (str(v) if isinstance(v, Path) else v) for k, v in given.items()
            if k in fields and v is not None}


# --- the agent's options, each with the config key it sets ---
AGENT_COMMON: tuple[Option, ...] = (
    Option(name="config", flags=("--config",), type=Path, metavar="FILE",
           help="Agent config file (TOML; or set EDGE_AGENT_CONFIG)"),
    Option(name="device_id", flags=("--device-id",), help="This device's id ([A-Za-z0-9_-])",
           key="agent.device_id"),
    Option(name="fleet", flags=("--fleet",), help="Fleet id ([A-Za-z0-9_-]; the default fleet is named default)",
           key="agent.fleet"),
    Option(name="store", flags=("--store",), type=Path, metavar="DIR", help="The model store directory",
           key="agent.store"),
    Option(name="key", flags=("--key",), type=Path, repeat=True,
           help="Trusted public key (file or dir of *.pub); repeatable", key="agent.keys"),
)  # fmt: skip
AGENT_SERVE: tuple[Option, ...] = (
    Option(name="source", flags=("--source",), key="serve.source",
           help="file:DATA.npz|csv, sim:imu, sim:vibration, dir:PATH, mqtt:TOPIC[?broker=URL], stdin"),
    Option(name="rate", flags=("--rate",), type=float, help="Replay at this many readings per second",
           key="serve.rate"),
    Option(name="runtime", flags=("--runtime",), help="Force a runtime (litert, onnxruntime, ...)",
           key="serve.runtime"),
    Option(name="threads", flags=("--threads",), type=int, help="Runtime threads (LiteRT: XNNPACK's too)",
           key="serve.threads"),
    Option(name="provider", flags=("--provider",), repeat=True, metavar="NAME", key="serve.providers",
           help="ONNX Runtime execution provider, in order of preference (repeat): tensorrt, cuda, "
           "openvino, cpu; those not installed are skipped with a warning, CPU is the last resort"),
    Option(name="delegate", flags=("--delegate",), metavar="LIBRARY", key="serve.delegate",
           help="LiteRT external delegate library (e.g. libedgetpu.so.1); if it does not load, "
           "a warning and the CPU"),
    Option(name="limit", flags=("--limit",), type=int, help="Stop after this many readings (answered or not)",
           key="serve.limit"),
    Option(name="quiet", flags=("--quiet", "-q"), type=bool, negatable=True, help="Print no result lines",
           key="serve.quiet"),
    Option(name="cache", flags=("--cache",), help="Input cache: off, exact or near:TOLERANCE (default off)",
           key="serve.cache"),
    Option(name="cache_mb", flags=("--cache-mb",), type=float, help="Cache memory cap in MiB (default 32)",
           key="serve.cache_mb"),
    Option(name="exit_threshold", flags=("--exit-threshold",), repeat=True, key="serve.exit_thresholds",
           help="Early-exit threshold in [0,1] for every exit, or STAGE:VALUE"),
    Option(name="batch", flags=("--batch",), type=int, help="Micro-batch up to N inputs (default 1)",
           key="serve.batch"),
    Option(name="batch_ms", flags=("--batch-ms",), type=float,
           help="...or until T ms passed, whichever first (default 5)", key="serve.batch_ms"),
    Option(name="backlog_batch", flags=("--backlog-batch",), type=int, key="serve.backlog_batch",
           help="Run up to N already-queued inputs together (file replay without --rate); 0 = off (default 32)"),
    Option(name="sink", flags=("--sink",), key="serve.sink",
           help="Results to stdout, mqtt (the --broker connection) or mqtt://HOST:PORT (default stdout)"),
    Option(name="results_qos", flags=("--results-qos",), type=int, help="QoS (0 or 1) of MQTT results (default 0)",
           key="serve.results_qos"),
    Option(name="telemetry_interval", flags=("--telemetry-interval",), type=float,
           help="Telemetry window seconds (default 10)", key="telemetry.interval"),
    Option(name="qos", flags=("--qos",), type=int, help="Telemetry QoS (0 or 1) (default 1)", key="telemetry.qos"),
    Option(name="outbox", flags=("--outbox",), type=Path, metavar="FILE", help="Telemetry outbox (SQLite) path",
           key="telemetry.outbox"),
)  # fmt: skip
AGENT_UPDATE: tuple[Option, ...] = (
    Option(name="isolate", flags=("--isolate",), type=bool, negatable=True,
           help="Health-check new models in a child process", key="update.isolate"),
    Option(name="allow_downgrade", flags=("--allow-downgrade",), type=bool, negatable=True,
           help="Accept an older version", key="update.allow_downgrade"),
    Option(name="probation_samples", flags=("--probation-samples",), type=int,
           help="Results before judging a new model (default 200)", key="update.probation_samples"),
)  # fmt: skip


def config_values(spec: tuple[Option, ...], given: Mapping[str, Any]) -> dict[str, Any]:
    """The values of ``spec``'s options ({parameter name: value}, None = not given) → the
    ``section.key`` config values they set (lists as tuples), for
    :func:`device_agent.config.load_config`."""
    values = {o.key: (tuple(v) if isinstance(v, list) else v) for o in spec
              if o.key and o not in BROKER and (v := given.get(o.name)) is not None and v != []}
    values.update({f"broker.{k}": v for k, v in broker_values(given).items()})
    return values
