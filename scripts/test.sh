#!/usr/bin/env bash
# The whole test suite: lint, then every test (emulator, DuckDB, AppTest, headless Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh --for-tests
.venv/bin/ruff check .
.venv/bin/lint-imports
.venv/bin/python -m pytest "$@"
