"""MQTT plumbing for the serving source and sink: broker URLs and clients.

Topic names come from ``device_agent.telemetry.topics`` (built in one place).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

from device_agent.errors import EdgeError


@dataclass(frozen=True)
class Broker:
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> Broker:
        """``mqtt://host:port`` (port 1883 by default) → a broker address."""
        u = urlparse(url if "://" in url else f"mqtt://{url}")
        if u.scheme != "mqtt" or not u.hostname:
            raise EdgeError(f"broker {url!r}: expected mqtt://HOST[:PORT]")
        try:
            port = u.port or 1883
        except ValueError:
            raise EdgeError(f"broker {url!r}: the port is not a number") from None
        return cls(u.hostname, port)


def new_client(client_id: str = ""):  # type: ignore[no-untyped-def]
    """A paho 2.x client using the version-2 callback API."""
    import paho.mqtt.client as mqtt

    return mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
