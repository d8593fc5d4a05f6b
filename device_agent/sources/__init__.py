"""Sources by URI scheme, through an explicit registry.

``file:DATA.npz[?rate=HZ&loop=1]``, ``sim:imu`` / ``sim:vibration[?seed=&window=&n=&rate=&hold=]``,
``dir:PATH[?poll=&existing=&idle=&n=]``, ``mqtt:TOPIC[?broker=mqtt://host:port&qos=&timeout=&n=]``,
``stdin``. Each kind is one module; add one by adding a module and one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from device_agent.errors import EdgeError
from device_agent.sources.base import Reading, Source

if TYPE_CHECKING:
    from device_agent.mqtt import MqttClient


def _num(params: dict[str, str], key: str, default: float | None, uri: str) -> float | None:
    if key not in params:
        return default
    try:
        return float(params[key])
    except ValueError:
        raise EdgeError(f"source {uri!r}: {key}={params[key]!r} is not a number") from None


def _file(rest: str, params: dict[str, str], connection: MqttClient | None) -> Source:
    from device_agent.sources.file import FileSource

    return FileSource(
        Path(rest), rate=_num(params, "rate", None, rest), loop=params.get("loop") == "1"
    )


def _sim(rest: str, params: dict[str, str], connection: MqttClient | None) -> Source:
    from device_agent.sources.sim import SimSource

    if rest not in ("imu", "vibration"):
        raise EdgeError(
            f"source sim:{rest}: unknown simulated sensor; expected sim:imu or sim:vibration"
        )
    u = f"sim:{rest}"
    window = _num(params, "window", None, u)
    return SimSource(
        rest,
        seed=int(_num(params, "seed", 0, u) or 0),
        window=None if window is None else int(window),
        n=int(_num(params, "n", 0, u) or 0),
        rate=_num(params, "rate", None, u),
        hold=int(_num(params, "hold", 1, u) or 1),
    )


def _dir(rest: str, params: dict[str, str], connection: MqttClient | None) -> Source:
    from device_agent.sources.dir import DirSource

    u = f"dir:{rest}"
    return DirSource(
        Path(rest),
        poll=_num(params, "poll", 0.2, u) or 0.2,
        existing=params.get("existing", "1") != "0",
        idle=_num(params, "idle", None, u),
        n=int(_num(params, "n", 0, u) or 0),
    )


def _mqtt(rest: str, params: dict[str, str], connection: MqttClient | None) -> Source:
    from device_agent.sources.mqtt import MqttSource

    u = f"mqtt:{rest}"
    return MqttSource(
        rest,
        broker=params.get("broker"),
        connection=connection,
        qos=int(_num(params, "qos", 1, u) or 0),
        timeout=_num(params, "timeout", 10.0, u) or 10.0,
        n=int(_num(params, "n", 0, u) or 0),
    )


def _stdin(rest: str, params: dict[str, str], connection: MqttClient | None) -> Source:
    from device_agent.sources.stdin import StdinSource

    return StdinSource()


# scheme → factory(rest, params, the agent's MQTT connection or None).
REGISTRY: dict[str, Callable[[str, dict[str, str], MqttClient | None], Source]] = {
    "file": _file,
    "sim": _sim,
    "dir": _dir,
    "mqtt": _mqtt,
    "stdin": _stdin,
}


def open_source(uri: str, *, connection: MqttClient | None = None, **params: str) -> Source:
    """``"file:test.npz?rate=50"`` → a source. Keyword params override query params;
    ``connection``: the agent's MQTT client, which ``mqtt:`` sources share."""
    scheme, _, rest = uri.partition(":")
    if scheme not in REGISTRY:
        raise EdgeError(
            f"unknown source {uri!r}; expected one of: {', '.join(s + ':' for s in REGISTRY)}"
        )
    rest, _, query = rest.partition("?")
    merged = {k: v[-1] for k, v in parse_qs(query).items()}
    merged.update({k: v for k, v in params.items() if v is not None})
    return REGISTRY[scheme](rest, merged, connection)


__all__ = ["REGISTRY", "Reading", "Source", "open_source"]
