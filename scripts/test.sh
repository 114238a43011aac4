#!/usr/bin/env bash
# Runs every test: Rust unit + integration tests, then the official-SDK tests in Python.
# Needs cmake (for pingora's zlib-ng) and python3 with venv; .ci/run installs them on Debian.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --all-targets

venv=.venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
# Reinstall the pinned SDKs whenever requirements.txt changes.
if [ ! -f "$venv/.installed" ] || [ tests/python/requirements.txt -nt "$venv/.installed" ]; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/python/requirements.txt
  touch "$venv/.installed"
fi
MODELGATE_BIN="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/debug/modelgate" "$venv/bin/python" -m pytest -q tests/python
