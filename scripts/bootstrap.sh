#!/usr/bin/env bash
# Creates .venv and installs the server's pinned runtime set (requirements.txt); with --for-tests also
# the test tools (requirements-test.txt), Debian's chromium (browser test) and postgresql (lake tests).
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.requirements.sha
want=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r requirements.txt
  # the project itself, editable, without touching the pinned set: the `sfduck` command and the
  # entry points through which the core finds the emulator
  .venv/bin/python -m pip install --quiet --no-deps -e .
  echo "$want" > "$stamp"
fi
if [ "${1:-}" = "--for-tests" ]; then
  test_stamp=.venv/.requirements-test.sha
  want_test=$(cat requirements.txt requirements-test.txt | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$test_stamp" 2>/dev/null)" != "$want_test" ]; then
    .venv/bin/python -m pip install --quiet -r requirements-test.txt
    echo "$want_test" > "$test_stamp"
  fi
  # Debian's chromium for the browser test, PostgreSQL for the lake tests' throwaway catalog cluster
  missing=""
  command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$missing postgresql"
  if [ -n "$missing" ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
  fi
fi
