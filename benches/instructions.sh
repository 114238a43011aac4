#!/usr/bin/env bash
# Instructions per request (not a test): the gateway under callgrind, which counts
# instructions rather than time, so the figure repeats on this noisy 2-core machine where
# CPU-time differences of a few µs drown in the noise. Passthrough chat completions
# against the nginx mock of benches/compare.sh (run that once first: it writes the mock
# config); counters are zeroed after a warm-up, then read after a bounded wrk run.
#
# Usage: benches/instructions.sh BIN CONFIG [SECONDS=5]
# e.g. benches/instructions.sh target/release/modelgate benches/out/compare/modelgate.after.yaml
# Needs: valgrind (callgrind_control), nginx, wrk. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$1 CONF=$2 DURATION=${3:-5}
OUT=$(cd benches/out/compare && pwd)
GW=$(grep -o "listen: \"[^\"]*\"" "$CONF" | head -1 | cut -d\" -f2)
nginx -c "$OUT/mock.conf" -p "$OUT" -e "$OUT/mock.error.log"
PID=""
cleanup() {
  [ -n "$PID" ] && kill -INT "$PID" 2>/dev/null || true
  kill "$(cat "$OUT/mock.pid")" 2>/dev/null || true
}
trap cleanup EXIT
rm -f "$OUT"/callgrind.out.*
RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out.%p" \
  "$BIN" -c "$CONF" >"$OUT/callgrind.log" 2>&1 &
PID=$!
for _ in $(seq 300); do
  curl -s -o /dev/null -X POST "http://$GW/v1/chat/completions" -H 'Authorization: Bearer sk-bench-1234' \
    -H 'Content-Type: application/json' -d '{"model":"gpt-4o-mini","messages":[]}' && break
  sleep 0.2
done
wrk -t1 -c4 -d3s -s "$OUT/post.lua" "http://$GW/v1/chat/completions" >/dev/null
callgrind_control -z "$PID" >/dev/null 2>&1
n=$(wrk -t1 -c4 -d"${DURATION}"s -s "$OUT/post.lua" "http://$GW/v1/chat/completions" | awk '/requests in/{print $1}')
sleep 1.5   # let the ledger's writer take its share (it writes every flush_interval)
callgrind_control -d "$PID" >/dev/null 2>&1
sleep 0.5
ir=$(callgrind_annotate "$(ls -t "$OUT"/callgrind.out.* | head -1)" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1; exit}')
awk -v ir="$ir" -v n="$n" 'BEGIN{printf "%d requests, %.0f instructions per request\n", n, ir/n}'
