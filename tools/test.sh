#!/usr/bin/env bash
# The whole test suite, as CI runs it: install, lint, type-check, pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/bootstrap.sh dev
bash tools/ensure_services.sh
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/pytest "$@"
