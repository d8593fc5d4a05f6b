"""The agent's one configuration: a TOML file, ``EDGE_AGENT_*`` variables and flags.

Precedence: a flag overrides the environment, which overrides the file, which overrides
the defaults. :func:`from_file`, :func:`from_env` and :func:`flag_values` turn each source
into typed values (errors name the source and the key); :func:`merge` layers them into a
frozen :class:`AgentConfig` (reading only the broker's password file, when one is named);
:func:`load_config` reads the file and the environment.

The file has sections ``[agent]``, ``[serve]``, ``[broker]``, ``[telemetry]`` and
``[update]`` (see ``tools/agent.toml`` for every key, commented). A key ``K`` of section
``S`` is the variable ``EDGE_AGENT_S_K`` (``EDGE_AGENT_K`` for ``[agent]``), upper case:
``EDGE_AGENT_DEVICE_ID``, ``EDGE_AGENT_BROKER_URL``, ``EDGE_AGENT_SERVE_SOURCE``.
The broker password is never a key: ``broker.password_file`` or ``$EDGE_MQTT_PASSWORD``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from device_agent.errors import EdgeError

if TYPE_CHECKING:  # imported where a broker is configured: a plain `run` skips it (cold start)
    from device_agent.mqtt import BrokerOptions

PASSWORD_ENV = "EDGE_MQTT_PASSWORD"  # the broker password, never a key of the file
ENV_PREFIX = "EDGE_AGENT_"
CONFIG_ENV = "EDGE_AGENT_CONFIG"
# EDGE_AGENT_* variables that are not configuration keys.
OTHER_ENV = {CONFIG_ENV, "EDGE_AGENT_PAUSE_AT"}


@dataclass(frozen=True, kw_only=True)
class ServeConfig:
    """What to serve and how: the source, runtime, cache, early exit, batching, sink."""

    source: str | None = None
    rate: float | None = None
    limit: int | None = None
    runtime: str | None = None
    threads: int | None = None
    # ONNX Runtime execution providers in order of preference (those not installed are
    # skipped with a warning; CPU is the last resort) and a LiteRT external delegate.
    providers: tuple[str, ...] = ()
    delegate: str | None = None
    cache: str = "off"
    cache_mb: float = 32.0
    exit_thresholds: tuple[str, ...] = ()
    batch: int = 1
    batch_ms: float = 5.0
    backlog_batch: int = 32
    sink: str = "stdout"
    results_qos: int = 0
    quiet: bool = False


@dataclass(frozen=True, kw_only=True)
class TelemetryConfig:
    """Telemetry windows (published when a broker is configured)."""

    interval: float = 10.0
    qos: int = 1
    outbox: Path | None = None


@dataclass(frozen=True, kw_only=True)
class UpdateConfig:
    """Over-the-air and local updates: health check, downgrades, probation."""

    isolate: bool = False
    allow_downgrade: bool = False
    probation_samples: int = 200


@dataclass(frozen=True, kw_only=True)
class AgentConfig:
    """Everything one agent process needs, merged from file, environment and flags."""

    device_id: str | None = None
    fleet: str = "default"
    store: Path | None = None
    keys: tuple[Path, ...] = ()
    broker: BrokerOptions | None = None
    serve: ServeConfig = field(default_factory=ServeConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    update: UpdateConfig = field(default_factory=UpdateConfig)


# --- the keys: (section, key) → how to read a value ---------------------------------------
Parse = Callable[[Any, bool], Any]  # (value, from_text) → typed value; ValueError when wrong


def _str(v: Any, text: bool) -> str:
    if not isinstance(v, str):
        raise ValueError("expected a string")
    return v


def _int(v: Any, text: bool) -> int:
    if text:
        return int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError("expected an integer")
    return v


def _float(v: Any, text: bool) -> float:
    if text:
        return float(v)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError("expected a number")
    return float(v)


def _bool(v: Any, text: bool) -> bool:
    if text:
        if v.lower() in ("1", "true", "yes", "on"):
            return True
        if v.lower() in ("0", "false", "no", "off", ""):
            return False
        raise ValueError("expected true or false")
    if not isinstance(v, bool):
        raise ValueError("expected true or false")
    return v


def _path(v: Any, text: bool) -> Path:
    return Path(_str(v, text)) if not isinstance(v, Path) else v


def _strs(v: Any, text: bool) -> tuple[str, ...]:
    if text:
        return tuple(s.strip() for s in v.split(",") if s.strip())
    if isinstance(v, str) or not isinstance(v, (list, tuple)) or not all(isinstance(s, str) for s in v):
        raise ValueError("expected a list of strings")
    return tuple(v)


def _paths(v: Any, text: bool) -> tuple[Path, ...]:
    return tuple(Path(s) for s in _strs([str(p) for p in v] if isinstance(v, (list, tuple)) else v, text))


KEYS: dict[tuple[str, str], Parse] = {
    ("agent", "device_id"): _str, ("agent", "fleet"): _str, ("agent", "store"): _path,
    ("agent", "keys"): _paths,
    ("serve", "source"): _str, ("serve", "rate"): _float, ("serve", "limit"): _int,
    ("serve", "runtime"): _str, ("serve", "threads"): _int, ("serve", "cache"): _str,
    ("serve", "providers"): _strs, ("serve", "delegate"): _str,
    ("serve", "cache_mb"): _float, ("serve", "exit_thresholds"): _strs, ("serve", "batch"): _int,
    ("serve", "batch_ms"): _float, ("serve", "backlog_batch"): _int, ("serve", "sink"): _str,
    ("serve", "results_qos"): _int, ("serve", "quiet"): _bool,
    ("broker", "url"): _str, ("broker", "username"): _str, ("broker", "password_file"): _str,
    ("broker", "ca_file"): _str, ("broker", "cert_file"): _str, ("broker", "key_file"): _str,
    ("broker", "keepalive"): _int, ("broker", "client_id"): _str,
    ("telemetry", "interval"): _float, ("telemetry", "qos"): _int, ("telemetry", "outbox"): _path,
    ("update", "isolate"): _bool, ("update", "allow_downgrade"): _bool,
    ("update", "probation_samples"): _int,
}  # fmt: skip
# Flag-only broker values: the --password alias (it warns) lands here, never in a file.
_FLAG_ONLY = {("broker", "password"): _str}


def env_name(section: str, key: str) -> str:
    """``("broker", "url")`` → ``EDGE_AGENT_BROKER_URL``; ``[agent]`` keys have no section."""
    return (ENV_PREFIX + ("" if section == "agent" else f"{section}_") + key).upper()


Values = dict[tuple[str, str], Any]


def from_file(doc: Mapping[str, Any], where: str) -> Values:
    """A parsed TOML document → typed values; unknown sections or keys are errors."""
    out: Values = {}
    for section, table in doc.items():
        if not isinstance(table, dict) or not any(s == section for s, _ in KEYS):
            raise EdgeError(f"{where}: unknown section [{section}]; expected one of "
                            f"{', '.join(sorted({f'[{s}]' for s, _ in KEYS}))}")
        for key, value in table.items():
            parse = KEYS.get((section, key))
            if parse is None:
                known = ", ".join(k for s, k in KEYS if s == section)
                raise EdgeError(f"{where}: [{section}] {key}: unknown key; expected one of {known}")
            out[(section, key)] = _parsed(parse, value, False, f"{where}: [{section}] {key}")
    return out


def from_env(environ: Mapping[str, str]) -> Values:
    """``EDGE_AGENT_*`` variables → typed values; an unknown one is an error (a typo)."""
    names = {env_name(s, k): (s, k) for s, k in KEYS}
    out: Values = {}
    for name, text in environ.items():
        if not name.startswith(ENV_PREFIX) or name in OTHER_ENV:
            continue
        if name == "EDGE_AGENT_ARGS":
            raise EdgeError("EDGE_AGENT_ARGS is no longer read: put the options in the config file "
                            "(--config agent.toml) or in EDGE_AGENT_* variables (see tools/agent.toml)")
        if name not in names:
            raise EdgeError(f"environment: {name} is not a setting; expected one of "
                            f"{', '.join(sorted(names))}")
        s, k = names[name]
        out[(s, k)] = _parsed(KEYS[(s, k)], text, True, f"environment: {name}")
    return out


def _parsed(parse: Parse, value: Any, text: bool, where: str) -> Any:
    try:
        return parse(value, text)
    except ValueError as e:
        msg = str(e) if str(e).startswith("expected") else f"expected {parse.__name__.strip('_')}"
        raise EdgeError(f"{where}: {msg}, found {value!r}") from None


def merge(*layers: Values, environ: Mapping[str, str] | None = None) -> AgentConfig:
    """Layers from lowest to highest precedence (file, environment, flags) → the config."""
    v: Values = {}
    for layer in layers:
        v.update({k: x for k, x in layer.items() if x is not None})

    def section(name: str) -> dict[str, Any]:
        return {k: x for (s, k), x in v.items() if s == name}

    agent = section("agent")
    return AgentConfig(
        device_id=agent.get("device_id"), fleet=agent.get("fleet", "default"), store=agent.get("store"),
        keys=tuple(agent.get("keys", ())),
        broker=broker_from(section("broker"), client_id=agent.get("device_id") or "", environ=environ),
        serve=ServeConfig(**section("serve")), telemetry=TelemetryConfig(**section("telemetry")),
        update=UpdateConfig(**section("update")),
    )


def broker_from(values: Mapping[str, Any], *, client_id: str = "",
                environ: Mapping[str, str] | None = None) -> BrokerOptions | None:
    """``BrokerOptions`` fields as given (``password_file`` read here, else
    ``$EDGE_MQTT_PASSWORD``) → checked :class:`BrokerOptions`; ``None`` without a URL. One
    client id for the whole process: ``client_id`` (the device id) unless one is given."""
    if not values.get("url"):
        return None
    from device_agent.mqtt import BrokerOptions

    b = dict(values)
    password_file = b.pop("password_file", None)
    if b.get("password") is None:
        b["password"] = read_password(password_file, dict(environ) if environ is not None else None)
    b["client_id"] = b.get("client_id") or client_id
    return BrokerOptions(**b).check()


def flag_values(flags: Mapping[str, Any]) -> Values:
    """``{"broker.url": ..., "serve.batch": ...}`` from a front end → values (None = not given)."""
    out: Values = {}
    for dotted, value in flags.items():
        s, _, k = dotted.partition(".")
        if (s, k) not in KEYS and (s, k) not in _FLAG_ONLY:
            raise KeyError(dotted)  # a programming error in a front end
        if value is not None and value != ():
            out[(s, k)] = value
    return out


def read_file(path: Path) -> Values:
    """The config file at ``path`` → values (TOML errors named with the file)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise EdgeError(f"--config {path}: cannot read it ({e.strerror})") from None
    if sys.version_info >= (3, 11):  # imported here: a run without a config file skips it
        import tomllib
    else:  # pragma: no cover - Python 3.10 images
        import tomli as tomllib
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise EdgeError(f"{path}: not valid TOML ({e})") from None
    return from_file(doc, str(path))


def load_config(path: Path | None, environ: Mapping[str, str], flags: Mapping[str, Any]) -> AgentConfig:
    """File (``path`` or ``$EDGE_AGENT_CONFIG``), then the environment, then the flags."""
    file_path = path or (Path(environ[CONFIG_ENV]) if environ.get(CONFIG_ENV) else None)
    file_values = read_file(file_path) if file_path else {}
    return merge(file_values, from_env(environ), flag_values(flags), environ=environ)


def read_password(
    password_file: str | Path | None, environ: dict[str, str] | None = None
) -> str | None:
    """The broker password: the first line of ``password_file``, else ``$EDGE_MQTT_PASSWORD``."""
    if password_file:
        try:
            text = Path(password_file).read_text(encoding="utf-8")
        except OSError as e:
            raise EdgeError(f"--password-file {password_file}: cannot read it ({e.strerror})") from None
        lines = text.splitlines()
        if not lines or not lines[0]:
            raise EdgeError(f"--password-file {password_file}: expected the password on the first line, "
                            "found an empty line")
        return lines[0]
    env = os.environ if environ is None else environ
    return env.get(PASSWORD_ENV) or None
