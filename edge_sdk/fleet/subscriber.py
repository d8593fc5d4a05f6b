"""The collector's MQTT connection: one IO thread around :mod:`edge_sdk.fleet.mqtt_codec`.

Why not paho (which the agent uses): paho costs about 70 µs of CPU per received
message here, more than parsing and storing a telemetry window, so a collector on paho
could not keep up with a fleet. This thread reads whole socket buffers, decodes them in
one loop and hands each buffer's messages over as one list.

Acknowledgements come from the consumer after it has stored a batch (:meth:`ack`), in
the order received as MQTT 3.1.1 requires. An ack carries the connection generation it
belongs to: acks for a connection that has since dropped are discarded, because the
broker redelivers those messages to the persistent session anyway. Everything that is
written to the socket is written by the IO thread (TLS objects must not be shared
between a reading and a writing thread); other threads queue bytes and wake it.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable

from device_agent.mqtt import BrokerOptions, parse_url
from edge_sdk.fleet import mqtt_codec as codec

log = logging.getLogger(__name__)

OnMessages = Callable[[list[codec.Publish], int], None]  # (messages, connection generation)


class Subscriber:
    """Connects, subscribes ``topic_filter`` on every (re)connect, delivers lists of messages."""

    def __init__(
        self,
        options: BrokerOptions,
        topic_filter: str,
        *,
        on_messages: OnMessages,
        qos: int = 1,
        on_connect: Callable[[], None] | None = None,
        on_disconnect: Callable[[], None] | None = None,
        on_subscribe: Callable[[], None] | None = None,
        max_packet: int = 1 << 20,
    ):
        self.options, self.topic_filter, self.qos = options, topic_filter, qos
        self._on_messages, self._on_subscribe = on_messages, on_subscribe
        self._on_connect, self._on_disconnect = on_connect, on_disconnect
        self.max_packet = max_packet
        self._host, self._port, self._tls = parse_url(options.url)
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._lock = threading.Lock()  # guards _out, _generation, _pending, _next_mid
        self._out: list[bytes] = []
        self._pending: dict[int, tuple[str, bytes, bool]] = {}  # our QoS 1 publishes not yet acked
        self._next_mid = 0
        self._generation = 0
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread = threading.Thread(target=self._run, name="collector-mqtt", daemon=True)

    # ---- API for other threads -----------------------------------------------------------
    @property
    def connected(self) -> bool:
        """Whether the broker has accepted the current connection (CONNACK received)."""
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        """Block until the broker accepts a connection or ``timeout`` passes; True if it did."""
        return self._connected.wait(timeout)

    def start(self) -> Subscriber:
        """Start the IO thread, which connects and reconnects by itself; returns the subscriber."""
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Send DISCONNECT (after any queued acks) and close the connection."""
        self._stop.set()
        self._wake()
        self._thread.join(timeout)
        self._wake_r.close()
        self._wake_w.close()

    def ack(self, generation: int, mids: list[int]) -> None:
        """Acknowledge stored QoS 1 messages received on connection ``generation``."""
        if not mids:
            return
        with self._lock:
            if generation != self._generation:
                return  # that connection is gone: the broker redelivers these
            self._out.append(codec.pubacks(mids))
        self._wake()

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish at QoS 1; kept and resent (DUP) after a reconnect until acknowledged."""
        with self._lock:
            mid = self._new_mid()
            self._pending[mid] = (topic, payload, retain)
            self._out.append(codec.publish(topic, payload, qos=1, mid=mid, retain=retain))
        self._wake()

    def _new_mid(self) -> int:
        for _ in range(0xFFFF):
            self._next_mid = self._next_mid % 0xFFFF + 1
            if self._next_mid not in self._pending:
                return self._next_mid
        raise RuntimeError("65535 publishes awaiting PUBACK")

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # already woken (buffer full), or stopping
            self._wake_w.send(b"\0")

    # ---- IO thread ------------------------------------------------------------------------
    def _run(self) -> None:
        delay = float(self.options.reconnect_min_s)
        outage = False  # logged once per outage, not once per attempt
        while not self._stop.is_set():
            try:
                sock = self._open()
            except Exception as e:  # the thread must outlive anything a connect attempt raises
                (log.debug if outage else log.warning)(
                    "broker %s: %s; retrying every %d to %d s", self.options.url, e,
                    self.options.reconnect_min_s, self.options.reconnect_max_s)
                outage = True
                self._stop.wait(delay)
                delay = min(delay * 2, float(self.options.reconnect_max_s))
                continue
            if outage:
                log.warning("broker %s: connected again", self.options.url)
            outage, delay = False, float(self.options.reconnect_min_s)
            try:
                self._session(sock)
            except Exception as e:  # anything the broker sends must end in a reconnect
                if not self._stop.is_set():
                    log.warning("lost broker %s: %s; retrying every %d to %d s", self.options.url, e,
                                self.options.reconnect_min_s, self.options.reconnect_max_s)
                    outage = True
            finally:
                self._connected.clear()
                sock.close()
                if self._on_disconnect:
                    self._on_disconnect()
            if not self._stop.is_set():
                self._stop.wait(float(self.options.reconnect_min_s))

    def _open(self) -> socket.socket:
        """TCP (and TLS), CONNECT, wait for CONNACK; raises when refused."""
        o = self.options
        sock = socket.create_connection((self._host, self._port), timeout=10)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls or o.ca_file or o.cert_file:
                sock = _tls_context(o).wrap_socket(sock, server_hostname=self._host)
            sock.sendall(codec.connect(
                o.client_id, clean_session=o.clean_session, keepalive=o.keepalive,
                username=o.username, password=o.password,
            ))  # fmt: skip
            return self._await_connack(sock)
        except BaseException:
            sock.close()
            raise

    def _await_connack(self, sock: socket.socket) -> socket.socket:
        self._decoder = codec.Decoder(max_packet=self.max_packet)
        while True:
            data = sock.recv(4096)
            if not data:
                raise ConnectionError("broker closed the connection before CONNACK")
            packets = self._decoder.feed(data)
            if packets:
                break
        ack = packets[0]
        if not isinstance(ack, codec.ConnAck):
            raise codec.ProtocolError(f"expected CONNACK, found {type(ack).__name__}")
        if ack.code:
            reason = codec.CONNACK_REASONS.get(ack.code, f"code {ack.code}")
            raise codec.ProtocolError(f"broker refused the connection: {reason}")
        sock.settimeout(None)
        self._early = packets[1:]
        return sock

    def _session(self, sock: socket.socket) -> None:
        with self._lock:
            self._generation += 1
            self._out = [codec.subscribe(self._new_mid(), self.topic_filter, self.qos)]
            self._out += [codec.publish(t, p, qos=1, mid=m, dup=True, retain=r)
                          for m, (t, p, r) in self._pending.items()]  # fmt: skip
        log.info("connected to %s as %s", self.options.url, self.options.client_id)
        self._connected.set()
        if self._on_connect:
            self._on_connect()
        self._dispatch(self._early)
        keepalive = float(self.options.keepalive)
        last_out = time.monotonic()
        ping_sent = 0.0
        while True:
            last_out = self._flush(sock, last_out)
            if self._stop.is_set():
                sock.sendall(codec.DISCONNECT_PACKET)
                return
            now = time.monotonic()
            # The broker's keepalive counts only what *we* send: a collector that only
            # receives (QoS 0 traffic needs no PUBACK) must still ping, whatever arrives.
            if keepalive and not ping_sent and now - last_out >= keepalive / 2:
                sock.sendall(codec.PINGREQ_PACKET)
                ping_sent = last_out = now
            if ping_sent and now - ping_sent > keepalive:
                raise TimeoutError(f"no PINGRESP within {keepalive:.0f} s")
            if not _readable(sock, self._wake_r, keepalive / 4 if keepalive else None):
                continue
            data = sock.recv(1 << 18)
            if not data:
                raise ConnectionError("broker closed the connection")
            packets = self._decoder.feed(data)
            if any(type(p) is codec.PingResp for p in packets):
                ping_sent = 0.0
            self._dispatch(packets)

    def _flush(self, sock: socket.socket, last_out: float) -> float:
        with contextlib.suppress(BlockingIOError):
            while self._wake_r.recv(4096):
                pass
        with self._lock:
            out, self._out = self._out, []
        if not out:
            return last_out
        sock.sendall(b"".join(out))
        return time.monotonic()

    def _dispatch(self, packets: list[codec.Packet]) -> None:
        messages = [p for p in packets if type(p) is codec.Publish]
        if messages:
            self._on_messages(messages, self._generation)  # type: ignore[arg-type]
        if len(messages) == len(packets):
            return
        for p in packets:
            if isinstance(p, codec.PubAck):
                with self._lock:
                    self._pending.pop(p.mid, None)
            elif isinstance(p, codec.SubAck):
                self._suback(p)

    def _suback(self, p: codec.SubAck) -> None:
        if any(c >= 0x80 for c in p.codes):
            log.warning("broker %s refused the subscription to %s",
                        self.options.url, self.topic_filter)  # fmt: skip
        elif self._on_subscribe:
            self._on_subscribe()


def _readable(sock: socket.socket, wake: socket.socket, timeout: float | None) -> bool:
    """Wait until the broker sent something (True) or we were woken / timed out (False)."""
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True  # decrypted bytes already buffered: select would not see them
    ready, _, _ = select.select([sock, wake], [], [], timeout)
    return sock in ready


def _tls_context(o: BrokerOptions) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=o.ca_file)
    if o.cert_file:
        ctx.load_cert_chain(o.cert_file, o.key_file)
    return ctx
