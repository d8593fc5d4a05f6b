#!/usr/bin/env bash
# Creates .venv (if missing) and installs the project with the given extra.
# Usage: tools/bootstrap.sh host|dev
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-host}"
py="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
stamp=".venv/.installed-$extra"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  # This project was the distribution "edge-sdk" before it became "edgekit-sdk": two
  # distributions must not own the same packages and scripts in one venv.
  if .venv/bin/python -m pip show --quiet edge-sdk >/dev/null 2>&1; then
    .venv/bin/python -m pip uninstall --quiet --yes edge-sdk
  fi
  .venv/bin/python -m pip install --quiet -e ".[$extra]"
  touch "$stamp"
fi
