"""``edge fleet add-device`` / ``add-user``: the production broker's password file and ACL."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from edge_sdk.cli._common import cli_errors

PASSWD = typer.Option(
    Path("/etc/mosquitto/edge.passwd"), "--passwd-file",
    help="Mosquitto password_file to add the user to (created if missing)",
)  # fmt: skip
ACL = typer.Option(
    Path("/etc/mosquitto/edge.acl"), "--acl-file",
    help="Mosquitto acl_file to rewrite (created if missing)",
)  # fmt: skip
PASSWORD_FROM = typer.Option(
    None, "--password-from",
    help="Read the password from this file ('-': stdin) instead of generating one",
)  # fmt: skip


def register(app: typer.Typer) -> None:
    """Add ``edge fleet add-device`` and ``add-user`` to the fleet group."""
    from edge_sdk.cli.fleet_cmd import fleet_app

    fleet_app.command("add-device")(add_device)
    fleet_app.command("add-user")(add_user)


@cli_errors
def add_device(
    device: str = typer.Argument(..., help="Device id ([A-Za-z0-9_-])"),
    fleet: str = typer.Option(..., "--fleet", help="The device's fleet"),
    passwd_file: Path = PASSWD,
    acl_file: Path = ACL,
    password_from: str = PASSWORD_FROM,
) -> None:
    """Let one device onto the broker as user FLEET/ID: it may write only
    edge/v1/FLEET/ID/... and read only its own deploy. Prints a new password once."""
    from edge_sdk.fleet.broker_auth import device_user

    _add(device_user(fleet, device), None, passwd_file, acl_file, password_from)


@cli_errors
def add_user(
    name: str = typer.Argument(..., help="User name ([A-Za-z0-9_-], no '/')"),
    role: str = typer.Option(..., "--role", help="collector (reads the fleet, writes alerts and "
                             "homeassistant/#) or deployer (writes deploy, reads deploy/status)"),
    fleet: str = typer.Option("+", "--fleet", help="Only this fleet ('+': every fleet)"),
    passwd_file: Path = PASSWD,
    acl_file: Path = ACL,
    password_from: str = PASSWORD_FROM,
) -> None:
    """Add (or replace) a collector or deployer user with its ACL block."""
    from device_agent.errors import EdgeError
    from edge_sdk.fleet.broker_auth import Role, check_role_user, role_rules

    try:
        chosen = Role(role)
    except ValueError:
        raise EdgeError(f"--role: expected collector or deployer, found {role!r}") from None
    _add(check_role_user(name), role_rules(chosen, fleet), passwd_file, acl_file, password_from)


def _add(user: str, rules: list[str] | None, passwd_file: Path, acl_file: Path,
         password_from: str | None) -> None:  # fmt: skip
    from edge_sdk.fleet.broker_auth import BrokerFiles, add_user, new_password

    password = new_password() if password_from is None else _read_password(password_from)
    add_user(BrokerFiles(passwd_file, acl_file), user, password, rules)
    typer.echo(f"user: {user}")
    if password_from is None:
        typer.echo(f"password: {password}")
        typer.echo("(shown once: store it on the device, e.g. in a file only the agent reads)",
                   err=True)  # fmt: skip
    typer.echo(f"wrote {passwd_file} and {acl_file}; reload Mosquitto to apply "
               "(systemctl reload mosquitto)", err=True)  # fmt: skip


def _read_password(source: str) -> str:
    from device_agent.errors import EdgeError
    from edge_sdk.fleet.broker_auth import check_password

    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise EdgeError(f"--password-from {source}: cannot read ({e})") from None
    return check_password(text.rstrip("\r\n"), f"--password-from {source}")
