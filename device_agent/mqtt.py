"""The one broker configuration and the one paho client of the agent (and the host tools).

:class:`BrokerOptions` says how to reach a broker: URL (``mqtt://`` or ``mqtts://``),
credentials, TLS files, keepalive, client id. :class:`MqttClient` is the only place that
turns it into paho calls. One agent process holds one :class:`MqttClient` (one
connection, one client id that broker ACLs can name) shared by telemetry, the update
listener, ``mqtt:`` sources and the ``mqtt`` results sink: each registers its
subscriptions (renewed on every reconnect) and connect hooks before :meth:`start`.

paho runs its network loop in a thread and reconnects by itself with a growing delay
(``connect_async`` + ``loop_start``), forever. A broker that cannot be reached is logged
at WARNING once per outage, with the retry interval; the return at INFO. Callbacks run
on paho's thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from device_agent.errors import EdgeError

if TYPE_CHECKING:  # paho itself is imported where a client is built: ~18 ms of every start
    import paho.mqtt.client as paho

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
    """How to reach a broker. ``url`` is ``mqtt://host[:port]`` or ``mqtts://host[:port]``.

    ``password`` is the secret itself (read from a file or the environment by
    :func:`~device_agent.config.read_password`; never shown by ``repr``). A CA, certificate or key turns TLS on
    even for ``mqtt://``.
    """

    url: str
    client_id: str = ""
    keepalive: int = 30
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    clean_session: bool = True
    max_inflight: int = 100
    reconnect_min_s: int = 1
    reconnect_max_s: int = 10

    @property
    def host_port(self) -> tuple[str, int]:
        """The host and port the URL names (the scheme's default port when none)."""
        return parse_url(self.url)[:2]

    @property
    def tls(self) -> bool:
        """Whether the connection uses TLS (``mqtts://``, or TLS files given)."""
        return parse_url(self.url)[2] or bool(self.ca_file or self.cert_file)

    def check(self) -> BrokerOptions:
        """Raise :class:`EdgeError` naming the option at fault (bad URL, missing file)."""
        parse_url(self.url)
        if self.keepalive < 1:
            raise EdgeError(f"--keepalive: expected seconds >= 1, found {self.keepalive}")
        if self.password is not None and self.username is None:
            raise EdgeError("--username: a password was given but no user name")
        if self.key_file and not self.cert_file:
            raise EdgeError("--tls-key: a client key needs its certificate (--tls-cert)")
        for flag, path in (("--tls-ca", self.ca_file), ("--tls-cert", self.cert_file),
                           ("--tls-key", self.key_file)):  # fmt: skip
            if path and not Path(path).is_file():
                raise EdgeError(f"{flag} {path}: no such file")
        return self


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


MessageHandler = Callable[["paho.MQTTMessage"], None]


@dataclass
class _Subscription:
    topic_filter: str
    qos: int
    acked: threading.Event = field(default_factory=threading.Event)


class MqttClient:
    """One paho client with reconnects, shared by every part of a process that needs MQTT.

    ``on_connect`` (and hooks added with :meth:`add_connect_hook`) run after every
    (re)connect; :meth:`subscribe` registers a filter that is renewed on each connect.
    """

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
        log_outages: bool = True,
    ):
        """``log_outages=False``: a one-shot command that reports the failure itself
        (:meth:`require_connected`) rather than retrying in the background."""
        self.options = options
        self._log_outages = log_outages
        self.last_error: str | None = None
        self._connected = threading.Event()
        self._outage = False
        self._connect_hooks = [on_connect] if on_connect else []
        self._publish_hooks = [on_publish] if on_publish else []
        self._on_disconnect, self._on_message = on_disconnect, on_message
        self._on_subscribe = on_subscribe
        self._subs: dict[str, _Subscription] = {}
        self._sub_mids: dict[int, str] = {}
        self._lock = threading.Lock()
        self._started = False
        self.client = self._build(will, manual_ack)

    def _build(self, will: Will | None, manual_ack: bool) -> paho.Client:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

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
            import ssl  # only a TLS connection pays for it (cold start of a plain `run`)

            try:
                c.tls_set(
                    ca_certs=o.ca_file,
                    certfile=o.cert_file,
                    keyfile=o.key_file,
                    cert_reqs=ssl.CERT_REQUIRED,
                    tls_version=ssl.PROTOCOL_TLS_CLIENT,
                )
            except (OSError, ssl.SSLError) as e:
                raise EdgeError(f"broker {o.url}: cannot load the TLS files ({e})") from None
        if will is not None:
            c.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        c.reconnect_delay_set(min_delay=o.reconnect_min_s, max_delay=o.reconnect_max_s)
        c.max_inflight_messages_set(o.max_inflight)
        c.max_queued_messages_set(0)
        c.on_connect = self._handle_connect
        c.on_connect_fail = self._handle_connect_fail
        c.on_disconnect = self._handle_disconnect
        c.on_message = self._handle_message
        c.on_publish = self._handle_publish
        c.on_subscribe = self._handle_subscribe
        self._host, self._port = host, port
        return c

    # registration (before or after start) -------------------------------------------
    def set_will(self, will: Will) -> None:
        """The Will to register with the broker; only before :meth:`start`."""
        if self._started:
            raise RuntimeError("the Will must be set before the client connects")
        self.client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)

    def add_connect_hook(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` (on paho's thread) after every (re)connect."""
        self._connect_hooks.append(hook)

    def add_publish_hook(self, hook: Callable[[int], None]) -> None:
        """Run ``hook(mid)`` when the broker acknowledges one of our publishes."""
        self._publish_hooks.append(hook)

    def subscribe(self, topic_filter: str, qos: int = 1, handler: MessageHandler | None = None) -> None:
        """Subscribe now (if connected) and after every reconnect; ``handler`` gets its messages."""
        with self._lock:
            self._subs[topic_filter] = _Subscription(topic_filter, qos)
        if handler is not None:
            self.client.message_callback_add(topic_filter, lambda c, u, msg: handler(msg))
        if self.connected:
            self._send_subscribe(topic_filter, qos)

    def wait_subscribed(self, topic_filter: str, timeout: float) -> bool:
        """Whether the broker acknowledged ``topic_filter`` within ``timeout`` seconds."""
        return self._subs[topic_filter].acked.wait(timeout)

    def _send_subscribe(self, topic_filter: str, qos: int) -> None:
        with self._lock:
            rc, mid = self.client.subscribe(topic_filter, qos=qos)
            if rc == 0 and mid is not None:  # paho's MQTT_ERR_SUCCESS
                self._sub_mids[mid] = topic_filter

    # paho callbacks (network thread) --------------------------------------------------
    def _retry_text(self) -> str:
        o = self.options
        return f"retrying every {o.reconnect_min_s} to {o.reconnect_max_s} s"

    def _warn_outage(self, what: str) -> None:
        self.last_error = what
        if not self._outage:
            self._outage = True
            level = logging.WARNING if self._log_outages else logging.DEBUG
            log.log(level, "broker %s: %s; %s", self.options.url, what, self._retry_text())

    def _handle_connect(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        if reason_code.is_failure:
            self._warn_outage(f"the broker refused the connection ({reason_code}; "
                              "check the user name, password and client certificate)")
            return
        if self._outage:
            log.warning("broker %s: connected again as %s", self.options.url, self.options.client_id)
        else:
            log.info("connected to %s as %s", self.options.url, self.options.client_id)
        self._outage, self.last_error = False, None
        self._connected.set()
        for s in list(self._subs.values()):
            self._send_subscribe(s.topic_filter, s.qos)
        for hook in self._connect_hooks:
            hook()

    def _handle_connect_fail(self, client, userdata) -> None:  # type: ignore[no-untyped-def]
        if self._outage:
            return
        self._warn_outage(f"cannot connect to {self._host}:{self._port} ({_reason(self._host, self._port)})")

    def _handle_disconnect(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        was = self._connected.is_set()
        self._connected.clear()
        if was and self._started:
            self._warn_outage(f"lost the connection ({reason_code})")
        if self._on_disconnect:
            self._on_disconnect()

    def _handle_message(self, client, userdata, msg) -> None:  # type: ignore[no-untyped-def]
        if self._on_message:
            self._on_message(msg)

    def _handle_publish(self, client, userdata, mid, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        for hook in self._publish_hooks:
            hook(mid)

    def _handle_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:  # type: ignore[no-untyped-def]
        with self._lock:
            topic_filter = self._sub_mids.pop(mid, None)
        failed = [rc for rc in reason_codes if rc.is_failure]
        if failed:
            log.warning("broker %s refused the subscription to %s: %s", self.options.url,
                        topic_filter or "?", failed)  # fmt: skip
            return
        if topic_filter in self._subs:
            self._subs[topic_filter].acked.set()
        if self._on_subscribe:
            self._on_subscribe()

    # use ------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """Whether the client is connected to the broker now."""
        return self._connected.is_set()

    def start(self) -> MqttClient:
        """Connect in the background; paho keeps reconnecting until :meth:`stop`."""
        self._started = True
        self.client.connect_async(self._host, self._port, keepalive=self.options.keepalive)
        self.client.loop_start()
        return self

    def wait_connected(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the connection; whether it is up."""
        return self._connected.wait(timeout)

    def require_connected(self, timeout: float) -> None:
        """Wait for the connection (a one-shot command's): raise :class:`EdgeError` naming
        the URL and the reason at the first failed attempt, or after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self.wait_connected(0.05):
            if self.last_error is not None or time.monotonic() > deadline:
                self.stop()
                why = self.last_error or f"no answer within {timeout:g} s"
                raise EdgeError(f"broker {self.options.url}: {why}")

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> paho.MQTTMessageInfo:
        """Publish ``payload`` on ``topic`` (queued by paho while the broker is away)."""
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge a message received with ``manual_ack`` (after it is stored)."""
        self.client.ack(mid, qos)

    def stop(self) -> None:
        """Send DISCONNECT (so the broker drops the Will) and stop the network thread."""
        self._started = False
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()


def _reason(host: str, port: int) -> str:
    """Why a TCP connection to ``host:port`` fails, in words (paho does not pass it on)."""
    import socket

    try:
        socket.getaddrinfo(host, port)
    except OSError:
        return "the host name does not resolve"
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as e:
        return e.strerror or type(e).__name__
    return "the TLS handshake or the MQTT connection failed"
