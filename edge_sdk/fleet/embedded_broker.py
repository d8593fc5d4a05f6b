"""An embedded amqtt broker for demos: no system packages needed.

amqtt (0.12) has no shared subscriptions: a ``$share/GROUP/...`` filter is kept as a
literal filter that no topic matches, so a collector must subscribe plainly here
(``CollectorOptions(share_group=None)``, ``edge collector`` without ``--share-group``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

from device_agent.errors import EdgeError
from edge_sdk.fleet.net import free_port


def broker_config(host: str, port: int) -> dict[str, object]:
    """amqtt's config for one anonymous TCP listener at ``host:port``."""
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


def _broker(config: dict[str, object]) -> Any:
    """An amqtt broker that sends retained messages only to the subscriptions they match.

    amqtt 0.12.1, on every CONNECT, replays to the connecting client the retained messages
    matching *every* topic filter any client has subscribed (``Broker.client_connected``
    loops over ``self._subscriptions``): with a collector subscribed to the fleet, a client
    that subscribes to ``nothing/here`` received every retained ``state``. Here a filter's
    retained messages go to a session only if that session holds the filter.
    """
    from amqtt.broker import Broker

    class MatchingRetainedBroker(Broker):
        async def _publish_retained_messages_for_subscription(
            self, subscription: tuple[str, int], session: Any
        ) -> None:
            holders = self._subscriptions.get(subscription[0], ())
            if any(s.client_id == session.client_id for s, _ in holders):
                await super()._publish_retained_messages_for_subscription(subscription, session)

    return MatchingRetainedBroker(config)  # type: ignore[arg-type]


async def _serve(
    host: str, port: int, stop: asyncio.Event, started: Callable[[], None] = lambda: None
) -> None:
    b = _broker(broker_config(host, port))
    try:
        await b.start()
    except Exception as e:
        raise EdgeError(f"broker: cannot listen on {host}:{port} ({e})") from e
    started()
    try:
        await stop.wait()
    finally:
        await b.shutdown()


def run_broker(host: str, port: int) -> None:
    """Serve until interrupted."""
    logging.getLogger("amqtt").setLevel(logging.WARNING)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(host, port, asyncio.Event()))


class EmbeddedBroker:
    """An amqtt broker on its own event-loop thread; :meth:`start` returns once it listens."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host, self.port = host, port or free_port()
        self._listening = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="embedded-broker", daemon=True)

    @property
    def url(self) -> str:
        """``mqtt://HOST:PORT``."""
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        """Start the broker thread and wait until it listens."""
        logging.getLogger("amqtt").setLevel(logging.WARNING)
        self._thread.start()
        if not self._listening.wait(timeout):
            raise EdgeError(f"broker: not listening on {self.host}:{self.port} after {timeout} s")
        if self._error:
            raise self._error
        return self

    def _run(self) -> None:
        async def main() -> None:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            await _serve(self.host, self.port, self._stop, self._listening.set)

        try:
            asyncio.run(main())
        except BaseException as e:  # reported by start(); the thread ends either way
            self._error = e
            self._listening.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Disconnect every client and close the port."""
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # loop already closed
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread.is_alive():
            self._thread.join(timeout)
