#!/usr/bin/env bash
# Starts Mosquitto on loopback with an explicit test config on a free port (tests, CI, trying
# things out) and prints its URL; stops on Ctrl-C. Usage: tools/mosquitto_test.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-.venv/bin/python}"
[ -x "$py" ] || py=python3
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" exec "$py" -m tests.support.mosquitto "${1:-$(mktemp -d)}"
