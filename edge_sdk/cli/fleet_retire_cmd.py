"""``edge fleet retire``: a device leaves the fleet (status, Home Assistant, retained birth)."""

from __future__ import annotations

import os

import typer

from device_agent.mqtt import BrokerOptions, MqttClient
from edge_sdk.cli._common import cli_errors
from edge_sdk.cli._options import broker_options


def register(app: typer.Typer) -> None:
    """Add ``edge fleet retire`` to the fleet group."""
    from edge_sdk.cli.fleet_cmd import fleet_app

    fleet_app.command("retire")(retire)


@cli_errors
@broker_options()
def retire(
    device: str = typer.Argument(..., help="Device id"),
    db: str = typer.Option("fleet.db", "--db", help="SQLite file or postgresql://..."),
    fleet: str = typer.Option(None, "--fleet", help="Fleet id (when ids repeat across fleets)"),
    broker: BrokerOptions | None = None,
    ha_prefix: str = typer.Option(
        "homeassistant", "--homeassistant-prefix", help="Home Assistant's discovery prefix"
    ),
) -> None:
    """Drop DEVICE from the fleet's status and remove it from Home Assistant. Its stored
    telemetry stays (history); if it reports again it comes back."""
    from device_agent.errors import EdgeError
    from device_agent.protocol import topics
    from edge_sdk.fleet import homeassistant as ha
    from edge_sdk.fleet.store import open_store

    topics.check_id(device)
    if fleet:
        topics.check_id(fleet, "fleet")
    prefix = ha.check_prefix(ha_prefix)
    # The broker first: a dead one is an error before anything is changed.
    client = _connected(broker) if broker is not None else None
    try:
        store = open_store(db, must_exist=True)
        try:
            found = store.retire(device, fleet)
        finally:
            store.close()
        if not found:
            raise EdgeError(f"device {device!r}{f' in fleet {fleet!r}' if fleet else ''}: not in {db}")
        (fleet_id, _), = found
        if client is not None:
            cleared = [topics.state(fleet_id, device), *ha.removal(prefix, fleet_id, device)]
            for info in [client.publish(t, b"", qos=1, retain=True) for t in cleared]:
                info.wait_for_publish(timeout=10)  # an empty retained payload deletes the retained message
    finally:
        if client is not None:
            client.stop()
    if client is not None:
        typer.echo(f"retired {fleet_id}/{device}: dropped from status; cleared {len(cleared)} retained "
                   f"topics on {client.options.url} (its birth and Home Assistant discovery under "
                   f"{prefix}/)")  # fmt: skip
    else:
        typer.echo(f"retired {fleet_id}/{device}: dropped from status. Its retained birth and Home "
                   "Assistant configs stay on the broker until you run this with --broker")  # fmt: skip


def _connected(broker: BrokerOptions) -> MqttClient:
    """A started client, connected, or :class:`EdgeError` naming the URL and the reason."""
    from dataclasses import replace

    client = MqttClient(replace(broker, client_id=broker.client_id or f"edge-fleet-retire-{os.getpid()}"),
                        log_outages=False)
    client.start()
    client.require_connected(10)
    return client
