"""``edge fleet retire``: a device leaves the fleet (status, Home Assistant, retained birth)."""

from __future__ import annotations

import os

import typer

from edge_sdk.cli._common import cli_errors


def register(app: typer.Typer) -> None:
    from edge_sdk.cli.fleet_cmd import fleet_app

    fleet_app.command("retire")(retire)


@cli_errors
def retire(
    device: str = typer.Argument(..., help="Device id"),
    db: str = typer.Option("fleet.db", "--db", help="SQLite file or postgresql://..."),
    fleet: str = typer.Option(None, "--fleet", help="Fleet id (when ids repeat across fleets)"),
    broker: str = typer.Option(
        None, "--broker", help="Also clear its retained messages there (birth, Home Assistant configs)"
    ),
    ha_prefix: str = typer.Option(
        "homeassistant", "--homeassistant-prefix", help="Home Assistant's discovery prefix"
    ),
) -> None:
    """Drop DEVICE from the fleet's status and remove it from Home Assistant. Its stored
    telemetry stays (history); if it reports again it comes back."""
    from device_agent.errors import EdgeError
    from device_agent.telemetry import topics
    from edge_sdk.fleet import homeassistant as ha
    from edge_sdk.fleet.store import open_store

    topics.check_id(device)
    if fleet:
        topics.check_id(fleet, "fleet")
    prefix = ha.check_prefix(ha_prefix)
    store = open_store(db)
    try:
        found = store.retire(device, fleet)
    finally:
        store.close()
    if not found:
        raise EdgeError(f"device {device!r}{f' in fleet {fleet!r}' if fleet else ''}: not in {db}")
    (fleet_id, _), = found
    if broker:
        cleared = [topics.state(fleet_id, device), *ha.removal(prefix, fleet_id, device)]
        _clear_retained(broker, cleared)
        typer.echo(f"retired {fleet_id}/{device}: dropped from status; cleared {len(cleared)} retained "
                   f"topics on {broker} (its birth and Home Assistant discovery under {prefix}/)")  # fmt: skip
    else:
        typer.echo(f"retired {fleet_id}/{device}: dropped from status. Its retained birth and Home "
                   "Assistant configs stay on the broker until you run this with --broker")  # fmt: skip


def _clear_retained(url: str, topic_list: list[str]) -> None:
    """An empty retained payload on each topic deletes the retained message."""
    from device_agent.errors import EdgeError
    from device_agent.mqtt import BrokerOptions, MqttClient

    client = MqttClient(BrokerOptions(url=url, client_id=f"edge-fleet-retire-{os.getpid()}"))
    client.start()
    try:
        if not client.wait_connected(10):
            raise EdgeError(f"--broker {url}: could not connect within 10 s")
        for info in [client.publish(t, b"", qos=1, retain=True) for t in topic_list]:
            info.wait_for_publish(timeout=10)
    finally:
        client.stop()
