"""``python -m edge_sdk``: the ``edge`` command."""

from edge_sdk.cli import main

main()
