#!/usr/bin/env bash
# Installs what is missing, then starts the server: the dashboard at /, the HTTP API at /api/v1
# (demo data unless Snowflake is configured).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
exec .venv/bin/streamlit run sfduck_server/app.py --server.address "${SFDUCK_ADDRESS:-127.0.0.1}" \
  --server.port "${SFDUCK_PORT:-8501}" --server.headless true "$@"
