#!/usr/bin/env bash
# Runs the demo: the gateway with a built-in config and an in-process mock provider on
# loopback, so no provider key is needed. Same as `cargo run --release -- --demo`, after
# checking (and, where possible, installing) what the build needs.
#   scripts/demo.sh                                   # gateway on 127.0.0.1:8080, metrics on :9091
#   scripts/demo.sh --listen 127.0.0.1:18080 --metrics-listen 127.0.0.1:19091
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/prereqs.sh
. scripts/lib/prereqs.sh
prereqs_ensure build || exit 1
exec cargo run --release -- --demo "$@"
