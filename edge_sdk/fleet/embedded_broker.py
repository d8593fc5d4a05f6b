"""An embedded amqtt broker for demos: no system packages needed."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from device_agent.errors import EdgeError


def broker_config(host: str, port: int) -> dict[str, object]:
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


async def _serve(host: str, port: int, stop: asyncio.Event) -> None:
    from amqtt.broker import Broker

    b = Broker(broker_config(host, port))
    try:
        await b.start()
    except Exception as e:
        raise EdgeError(f"broker: cannot listen on {host}:{port} ({e})") from e
    try:
        await stop.wait()
    finally:
        await b.shutdown()


def run_broker(host: str, port: int) -> None:
    """Serve until interrupted."""
    logging.getLogger("amqtt").setLevel(logging.WARNING)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(host, port, asyncio.Event()))
