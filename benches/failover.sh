#!/usr/bin/env bash
# Failover under load (not a test): two nginx mock providers behind modelgate (one model,
# weights 1:1); wrk runs for 30 s and one mock is killed halfway. Reports what clients saw:
# non-2xx responses and socket errors (target: 0 for non-stream requests) and latency
# percentiles over the whole run, which includes the failover.
#
# Usage: benches/failover.sh [SECONDS=30] [CONNECTIONS=16]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-30}
CONNS=${2:-16}
OUT=benches/out/failover
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
A_PORT=19101 B_PORT=19102 GW_PORT=19103
for tool in nginx wrk; do command -v $tool >/dev/null || { echo "missing $tool"; exit 1; }; done
cargo build --release --quiet
BIN=${CARGO_TARGET_DIR:-target}/release/modelgate
CHAT='{"id":"chatcmpl-mock","object":"chat.completion","created":1700000000,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10}}'
for name in a b; do
  port=$A_PORT; [ $name = b ] && port=$B_PORT
  mkdir -p "$OUT/tmp-$name"
  cat > "$OUT/$name.conf" <<CONF
worker_processes 1;
pid $OUT/$name.pid;
error_log $OUT/$name.error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $OUT/tmp-$name; proxy_temp_path $OUT/tmp-$name;
  fastcgi_temp_path $OUT/tmp-$name; uwsgi_temp_path $OUT/tmp-$name; scgi_temp_path $OUT/tmp-$name;
  server { listen 127.0.0.1:$port; location / { default_type application/json; return 200 '$CHAT'; } }
}
CONF
  nginx -c "$OUT/$name.conf" -p "$OUT" -e "$OUT/$name.error.log"
done
cat > "$OUT/modelgate.yaml" <<CONF
server: { listen: "127.0.0.1:$GW_PORT", metrics_listen: "127.0.0.1:19104", threads: 1, grace_period: 1s, drain_delay: 0s, pid_file: $OUT/mg.pid, upgrade_sock: $OUT/mg.sock }
providers:
  a: { kind: openai, base_url: "http://127.0.0.1:$A_PORT", timeouts: { connect: 1s, first_byte: 5s } }
  b: { kind: openai, base_url: "http://127.0.0.1:$B_PORT", timeouts: { connect: 1s, first_byte: 5s } }
models:
  m: { targets: [{ provider: a }, { provider: b }] }
keys: [{ name: bench, key: sk-bench-key }]
retry: { max_attempts: 2, cooldown: 5s }
CONF
cat > "$OUT/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench-key"
wrk.body = '{"model":"m","messages":[{"role":"user","content":"Hello!"}]}'
LUA
RUST_LOG=warn "$BIN" -c "$OUT/modelgate.yaml" 2>"$OUT/modelgate.log" &
GW=$!
cleanup() { kill "$GW" 2>/dev/null || true; for n in a b; do [ -f "$OUT/$n.pid" ] && kill "$(cat "$OUT/$n.pid")" 2>/dev/null || true; done; }
trap cleanup EXIT
sleep 1
( sleep $((DURATION / 2)); kill "$(cat "$OUT/a.pid")"; echo "killed provider a at $((DURATION / 2))s" >&2 ) &
wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$OUT/post.lua" "http://127.0.0.1:$GW_PORT/v1/chat/completions" | tee "$OUT/wrk.txt"
echo
echo "client-visible errors: non-2xx=$(awk '/Non-2xx/{print $NF}' "$OUT/wrk.txt") socket=$(awk '/Socket errors/{print}' "$OUT/wrk.txt")"
curl -s http://127.0.0.1:19104/metrics | grep -E '^modelgate_(failovers_total|upstream_attempts_total)' || true
