"""``python -m device_agent``: the ``edge-agent`` command line."""

from device_agent.cli import main

raise SystemExit(main())
