"""Real metavars for both CLIs (``--broker URL`` rather than ``--broker TEXT``): ``edge-agent``
takes them from here when its parser is built (``device_agent.cli_parser``), ``edge`` when
its commands are (``edge_sdk.cli._help``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from device_agent.cli_options import Option


# What to type after an option, by its long name (its type alone would say TEXT, INTEGER, FLOAT).
METAVARS = {
    "--broker": "URL", "--sink": "stdout|URL", "--db": "FILE|URL", "--source": "SOURCE",
    "--target": "tflite|onnx|both", "--calibration": "minmax|percentile|entropy",
    "--compress": "none|zstd|deflate", "--exit-criterion": "max_prob|entropy",
    "--cache": "off|exact|near:TOL", "--exit-threshold": "[STAGE:]VALUE", "--fleet": "ID",
    "--device-id": "ID", "--device": "ID", "--devices": "ID,ID,...", "--group": "FLEET",
    "--runtime": "NAME", "--tls-ca": "PEM", "--tls-cert": "PEM", "--tls-key": "PEM",
    "--username": "USER", "--password": "SECRET", "--client-id": "ID", "--share-group": "GROUP",
    "--name": "NAME", "--exit-at": "LAYER,...", "--exit-fractions": "F,...",
    "--device-type": "TYPE", "--host": "ADDR", "--port": "PORT",
    "--metrics-port": "PORT", "--rate": "HZ", "--timeout": "SECONDS", "--interval": "SECONDS",
    "--telemetry-interval": "SECONDS", "--offline-after": "SECONDS", "--alert-interval": "SECONDS",
    "--probation-timeout": "SECONDS", "--keepalive": "SECONDS", "--retention-days": "DAYS",
    "--max-drop": "POINTS", "--prune": "FRACTION", "--lowrank": "ENERGY", "--share": "K",
    "--canary": "PERCENT", "--cache-mb": "MIB", "--batch-ms": "MS", "--latency-budget-ms": "MS",
    "--device-cost": "PER_HOUR", "--chunk-size": "BYTES", "--qos": "0|1", "--results-qos": "0|1",
}

# An option's type → what to type, where no metavar is given nor in METAVARS.
TYPE_METAVARS: dict[type, str] = {str: "VALUE", int: "N", float: "X", Path: "PATH"}


def metavar(option: Option) -> str:
    """What to type after ``option``: its own metavar, the table's, else its type's."""
    return option.metavar or METAVARS.get(option.long) or TYPE_METAVARS.get(option.type, "VALUE")
