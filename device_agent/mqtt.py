"""A small wrapper around paho-mqtt 2.x: broker URLs, TLS, auth, a Will, reconnects.

paho runs its network loop in a thread and reconnects by itself (``connect_async`` +
``loop_start``); this class only turns options into the right paho calls and exposes
connection state, so the telemetry publisher, the collector and OTA share one setup.
Callbacks run on paho's thread.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from device_agent.errors import EdgeError

log = logging.getLogger(__name__)

_SCHEMES = {"mqtt": (1883, False), "tcp": (1883, False), "mqtts": (8883, True), "ssl": (8883, True)}


@dataclass(frozen=True, kw_only=True)
class Will:
    """The message the broker publishes for us when we vanish without a DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True, kw_only=True)
class BrokerOptions:
    """How to reach a broker. ``url`` is ``mqtt://host:port`` or ``mqtts://host:port``."""

    url: str
    client_id: str
    keepalive: int = 30
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    clean_session: bool = True
    max_inflight: int = 100
    reconnect_min_s: int = 1
    reconnect_max_s: int = 5

    @property
    def host_port(self) -> tuple[str, int]:
        return parse_url(self.url)[:2]


def parse_url(url: str) -> tuple[str, int, bool]:
    """``mqtt://host:port`` → ``(host, port, tls)``; raises :class:`EdgeError` when malformed."""
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in _SCHEMES or not parts.hostname:
        raise EdgeError(
            f"broker URL: expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT], found {url!r}"
        )
    default_port, tls = _SCHEMES[parts.scheme]
    try:
        port = parts.port or default_port
    except ValueError:
        raise EdgeError(f"broker URL: expected a port number, found {url!r}") from None
    return parts.hostname, port, tls


MessageHandler = Callable[[paho.MQTTMessage], None]


class MqttClient:
    """One paho client with reconnects. ``on_connect`` runs after every (re)connect."""

    def __init__(
        self,
        options: BrokerOptions,
        *,
        will: Will | None = None,
        on_connect: Callable[[], None] | None = None,
        on_disconnect: Callable[[], None] | None = None,
        on_message: MessageHandler | None = None,
        on_publish: Callable[[int], None] | None = None,
        on_subscribe: Callable[[], None] | None = None,
        manual_ack: bool = False,
    ):
        self.options = options
        self._connected = threading.Event()
        self._on_connect, self._on_disconnect = on_connect, on_disconnect
        self._on_message, self._on_publish = on_message, on_publish
        self._on_subscribe = on_subscribe
        self.client = self._build(will, manual_ack)

    def _build(self, will: Will | None, manual_ack: bool) -> paho.Client:
        o = self.options
        host, port, tls = parse_url(o.url)
        c = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=o.client_id,
            clean_session=o.clean_session,
            protocol=paho.MQTTv311,
            manual_ack=manual_ack,
        )
        if o.username is not None:
            c.username_pw_set(o.username, o.password)
        if tls or o.ca_file or o.cert_file:
            c.tls_set(
                ca_certs=o.ca_file,
                certfile=o.cert_file,
                keyfile=o.key_file,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        if will is not None:
            c.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        c.reconnect_delay_set(min_delay=o.reconnect_min_s, max_delay=o.reconnect_max_s)
        c.max_inflight_messages_set(o.max_inflight)
        c.max_queued_messages_set(0)
        c.on_connect = self._handle_connect
        c.on_disconnect = self._handle_disconnect
        c.on_message = self._handle_message
        c.on_publish = self._handle_publish
        c.on_subscribe = self._handle_subscribe
        self._host, self._port = host, port
        return c

    # paho callbacks (network thread)
    def _handle_connect(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        if reason_code.is_failure:
            log.warning("broker %s refused the connection: %s", self.options.url, reason_code)
            return
        log.info("connected to %s as %s", self.options.url, self.options.client_id)
        self._connected.set()
        if self._on_connect:
            self._on_connect()

    def _handle_disconnect(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        was = self._connected.is_set()
        self._connected.clear()
        if was:
            log.info("disconnected from %s: %s", self.options.url, reason_code)
        if self._on_disconnect:
            self._on_disconnect()

    def _handle_message(self, client, userdata, msg) -> None:  # type: ignore[no-untyped-def]
        if self._on_message:
            self._on_message(msg)

    def _handle_publish(self, client, userdata, mid, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        if self._on_publish:
            self._on_publish(mid)

    def _handle_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:  # type: ignore[no-untyped-def]
        failed = [rc for rc in reason_codes if rc.is_failure]
        if failed:
            log.warning("broker %s refused a subscription: %s", self.options.url, failed)
        elif self._on_subscribe:
            self._on_subscribe()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        """Connect in the background; paho keeps reconnecting until :meth:`stop`."""
        self.client.connect_async(self._host, self._port, keepalive=self.options.keepalive)
        self.client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> paho.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        self.client.subscribe(topic_filter, qos=qos)

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge a message received with ``manual_ack`` (after it is stored)."""
        self.client.ack(mid, qos)

    def stop(self) -> None:
        """Send DISCONNECT (so the broker drops the Will) and stop the network thread."""
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()
