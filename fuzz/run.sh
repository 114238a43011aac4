#!/usr/bin/env bash
# Runs every fuzz target (or those named) for SECONDS each on the nightly toolchain with
# cargo-fuzz, seeded from tests/fixtures (fuzz/seed.py); prints executions and findings.
# `fuzz/run.sh --build` only builds the targets (what CI does).
#
# Usage: fuzz/run.sh [--build | SECONDS=60] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
targets=(translate_request translate_response translate_stream sse_framer passthrough_relay
         config_load key_extraction path_classification)
mode=${1:-60}; shift || true
[ $# -gt 0 ] && targets=("$@")
if [ "$mode" = --build ]; then
  exec cargo +nightly fuzz build
fi
python3 seed.py seeds
mkdir -p corpus logs
printf '%-22s %12s %10s %s\n' target executions corpus findings
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  # -rss_limit_mb: a finding, not the machine's memory, when an input blows up.
  cargo +nightly fuzz run "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$mode" -rss_limit_mb=2048 -print_final_stats=1 > "logs/$t.log" 2>&1 || true
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' | tail -1)
  found=$(find "artifacts/$t" -type f | wc -l)
  printf '%-22s %12s %10s %s\n' "$t" "${execs:-?}" "$(find "corpus/$t" -type f | wc -l)" "$found"
done
