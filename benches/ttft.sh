#!/usr/bin/env bash
# Added time to first token of a passthrough stream (a benchmark, not a test): streamed
# chat completions at a fixed rate, straight to an nginx mock that answers with an
# OpenAI event stream, through the bare Pingora proxy, and through modelgate with
# everything on (a key with rpm/tpm limits and a budget, the ledger on a SQLite file).
# benches/ttft.py paces the requests and times each one from its write to the first
# `data:` byte. The proxies are pinned to core 1, the mock and the client to core 0.
#
# Usage: benches/ttft.sh [RATE=1000] [SECONDS=10] [CONNECTIONS=16]
# BIN and BARE name prebuilt binaries (else both are built). Needs nginx, python3,
# taskset, curl. Loopback only; bounded by SECONDS per target.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/nginx.sh
. benches/lib/nginx.sh
RATE=${1:-1000} DURATION=${2:-10} CONNS=${3:-16}
OUT=benches/out/ttft
mkdir -p "$OUT/tmp"
OUT=$(cd "$OUT" && pwd)
MOCK=19201 GW=19202 BARE_PORT=19203
KEY=sk-bench-ttft
if [ -z "${BIN:-}" ] || [ -z "${BARE:-}" ]; then
  cargo build --release --quiet --bin modelgate --example bare_pingora
fi
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/modelgate}
BARE=${BARE:-${CARGO_TARGET_DIR:-target}/release/examples/bare_pingora}

# An OpenAI stream of 8 chunks, its usage chunk and [DONE], as nginx returns it at once.
SSE=$(
  for i in $(seq 8); do
    printf 'data: {"id":"chatcmpl-mock","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"word%s "},"finish_reason":null}]}\n\n' "$i"
  done
  printf 'data: {"id":"chatcmpl-mock","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":8,"total_tokens":17}}\n\ndata: [DONE]\n\n'
)
nginx_mock_conf "$OUT" "$MOCK" text/event-stream "$SSE"
rm -f "$OUT"/ledger.db*
cat > "$OUT/modelgate.yaml" <<EOF
server: { listen: "127.0.0.1:$GW", metrics_listen: "", threads: 1, grace_period: 1s, drain_delay: 0s, pid_file: $OUT/mg.pid, upgrade_sock: $OUT/mg.sock }
store: { url: "sqlite://$OUT/ledger.db" }
providers:
  mock: { kind: openai, base_url: "http://127.0.0.1:$MOCK", credentials: ["sk-provider"] }
models:
  gpt-4o-mini: { targets: [{ provider: mock }] }
keys:
  - name: bench
    key: $KEY
    limits: { rpm: 100000000, tpm: 100000000000 }
    budgets: [{ usd: 1000000, period: month }]
EOF

pids=()
cleanup() {
  [ -f "$OUT/mock.pid" ] && kill "$(cat "$OUT/mock.pid")" 2>/dev/null || true
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill -INT "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
taskset -c 0 nginx -c "$OUT/mock.conf" -p "$OUT" -e "$OUT/mock.error.log"
RUST_LOG=warn taskset -c 1 "$BIN" -c "$OUT/modelgate.yaml" 2>"$OUT/modelgate.log" &
GW_PID=$!
pids+=("$GW_PID")
BARE_LISTEN=127.0.0.1:$BARE_PORT BARE_UPSTREAM=127.0.0.1:$MOCK BARE_KEY=$KEY BARE_NO_STEAL=1 \
  taskset -c 1 "$BARE" >"$OUT/bare.log" 2>&1 &
BARE_PID=$!
pids+=("$BARE_PID")
for port in $MOCK $BARE_PORT $GW; do
  for _ in $(seq 50); do
    out=$(curl -s -X POST "http://127.0.0.1:$port/v1/chat/completions" -H "Authorization: Bearer $KEY" \
      -H 'Content-Type: application/json' -d '{"model":"gpt-4o-mini","stream":true,"messages":[]}' || true)
    case "$out" in *'word1'*) break ;; esac
    sleep 0.1
  done
  case "$out" in *'word1'*) ;; *) echo "127.0.0.1:$port answered: $out"; exit 1 ;; esac
done
taskset -a -cp 1 "$GW_PID" >/dev/null
taskset -a -cp 1 "$BARE_PID" >/dev/null

echo "time to first token: $RATE streamed requests/s over $CONNS connections, ${DURATION}s per target, $(date -u +%FT%TZ)"
echo "| target                       | reqs   | p50 ms  | p90 ms  | p99 ms  |"
echo "|------------------------------|--------|---------|---------|---------|"
taskset -c 0 python3 benches/ttft.py "$RATE" "$DURATION" "$CONNS" "$KEY" \
  "direct to the mock=http://127.0.0.1:$MOCK/v1/chat/completions" \
  "bare Pingora=http://127.0.0.1:$BARE_PORT/v1/chat/completions" \
  "modelgate passthrough=http://127.0.0.1:$GW/v1/chat/completions"
