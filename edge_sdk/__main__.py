"""``python -m edge_sdk``: the ``edge`` command."""

from edge_sdk.cli_entry import main

main()
