#!/usr/bin/env bash
# Runs every test: Rust unit + integration tests, then the official-SDK tests in Python.
# Needs cmake (for pingora's zlib-ng), a C compiler and make, and python3 with venv; the
# check below installs missing Debian packages when it can (root or passwordless sudo),
# or stops with the command that installs them. The SDKs come from PyPI (network).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=lib/prereqs.sh
. scripts/lib/prereqs.sh
needs=(build python postgres redis browser)
# .ci/run sets this: deploy/prometheus is then checked with promtool, not skipped.
if [ "${MODELGATE_REQUIRE_PROMTOOL:-0}" = 1 ]; then
  needs+=(promtool)
fi
prereqs_ensure "${needs[@]}" || exit 1

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
