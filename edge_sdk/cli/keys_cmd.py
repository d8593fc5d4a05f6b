"""``edge keys``: Ed25519 key pairs for signing bundles."""

from __future__ import annotations

from pathlib import Path

import typer

from edge_sdk.cli._common import cli_errors

keys_app = typer.Typer(help="Signing keys (Ed25519).", no_args_is_help=True, rich_markup_mode=None)


def register(app: typer.Typer) -> None:
    """Add the ``edge keys`` group to ``app``."""
    app.add_typer(keys_app, name="keys")


@keys_app.command("new")
@cli_errors
def new_keys(
    out: Path = typer.Option(..., "--out", help="Private key path; the public key is OUT.pub"),
) -> None:
    """Write a new key pair: OUT (private, mode 0600) and OUT.pub. Never overwrites."""
    from device_agent.cli_support import check_output_file
    from edge_sdk.bundle.signing import new_key_pair

    check_output_file(out, "private key")
    kp = new_key_pair(out)
    typer.echo(f"private key: {kp.private} (keep it secret)")
    typer.echo(f"public key:  {kp.public} (copy to each device's keys/ directory)")
    typer.echo(f"key id:      {kp.key_id}")
