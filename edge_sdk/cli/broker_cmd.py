"""``edge broker``: an embedded MQTT broker (amqtt) for trying things out."""

from __future__ import annotations

import typer

from edge_sdk.cli._common import cli_errors


def register(app: typer.Typer) -> None:
    """Add ``edge broker`` to ``app``."""
    app.command("broker")(broker)


def _listen_port(host: str, port: int) -> int:
    """``port`` if it can be listened on at ``host`` (any free port for 0), else an error
    naming the address, before the broker starts (whose failure is a logged traceback)."""
    from device_agent.errors import EdgeError
    from edge_sdk.fleet.net import free_port

    try:
        return free_port(host, port)
    except OSError as e:
        raise EdgeError(f"--host {host} --port {port}: cannot listen there "
                        f"({e.strerror or e})") from None


@cli_errors
def broker(
    port: int = typer.Option(0, "--port", help="TCP port; 0 picks a free one"),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on"),
) -> None:
    """Run an MQTT 3.1.1 broker until Ctrl-C (for production use Mosquitto: tools/mosquitto/)."""
    from edge_sdk.fleet.embedded_broker import run_broker

    chosen = _listen_port(host, port)
    typer.echo(f"broker: mqtt://{host}:{chosen}", err=False)
    typer.echo("broker: no $share subscriptions here; run edge collector without --share-group",
               err=True)  # fmt: skip
    run_broker(host, chosen)
