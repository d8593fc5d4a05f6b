#!/usr/bin/env bash
# The whole path on shipped data, with embedded defaults: nothing else to install.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/bootstrap.sh host
exec .venv/bin/edge demo "$@"
