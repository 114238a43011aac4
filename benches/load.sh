#!/usr/bin/env bash
# Load benchmark (not a test): the same POST /v1/chat/completions load against
#   (a) an nginx static mock directly (the ceiling),
#   (b) nginx as a plain reverse proxy to it (the baseline to beat),
#   (c) modelgate (one key, one model) in front of it,
# with the proxy under test pinned to core 1 and wrk + the mock on core 0. Prints RPS,
# p50/p99 latency, the proxy's CPU microseconds per request (utime+stime from
# /proc/PID/stat over the run) and peak RSS. Loopback only; every run is bounded.
#
# Usage: benches/load.sh [RUNS=3] [SECONDS=10] [CONNECTIONS=16]
# Needs: nginx (Debian nginx-light), wrk, taskset; builds modelgate in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
DURATION=${2:-10}
CONNS=${3:-16}
WARMUP=2
OUT=benches/out
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
MOCK_PORT=19001 PROXY_PORT=19002 GW_PORT=19003
CLK_TCK=$(getconf CLK_TCK)

for tool in nginx wrk taskset; do
  command -v $tool >/dev/null || { echo "missing $tool (apt-get install nginx-light wrk util-linux)"; exit 1; }
done
cargo build --release --quiet
BIN=${CARGO_TARGET_DIR:-target}/release/modelgate

ANTHROPIC='{"id":"msg_mock","type":"message","role":"assistant","model":"claude-mock","content":[{"type":"text","text":"Hello! How can I help you today?"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":9,"output_tokens":9}}'
# An Anthropic event stream, as nginx returns it in one piece (newlines kept literally).
ANTHROPIC_SSE='event: message_start
data: {"type":"message_start","message":{"id":"msg_mock","type":"message","role":"assistant","content":[],"model":"claude-mock","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":9,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello!"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" How can I help"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" you today?"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":9}}

event: message_stop
data: {"type":"message_stop"}

'
CHAT='{"id":"chatcmpl-mock","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today?"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":9,"total_tokens":18}}'

nginx_conf() { # name, server block
  cat > "$OUT/$1.conf" <<EOF
worker_processes 1;
pid $OUT/$1.pid;
error_log $OUT/$1.error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $OUT/tmp-$1; proxy_temp_path $OUT/tmp-$1;
  fastcgi_temp_path $OUT/tmp-$1; uwsgi_temp_path $OUT/tmp-$1; scgi_temp_path $OUT/tmp-$1;
  keepalive_requests 1000000; keepalive_timeout 300s;
  $2
}
EOF
  mkdir -p "$OUT/tmp-$1"
}

nginx_conf mock "server {
    listen 127.0.0.1:$MOCK_PORT backlog=4096;
    location /v1/chat/completions { default_type application/json; return 200 '$CHAT'; }
    location /v1/messages { default_type application/json; return 200 '$ANTHROPIC'; }
    location /sse/v1/messages { default_type text/event-stream; return 200 '$ANTHROPIC_SSE'; }
  }"
nginx_conf proxy "upstream mock { server 127.0.0.1:$MOCK_PORT; keepalive 64; }
  server {
    listen 127.0.0.1:$PROXY_PORT backlog=4096;
    location / {
      if (\$http_authorization != \"Bearer sk-bench-key\") { return 401; }
      proxy_pass http://mock; proxy_http_version 1.1; proxy_set_header Connection \"\";
      proxy_buffering off;
    }
  }"
cat > "$OUT/modelgate.yaml" <<EOF
server:
  listen: "127.0.0.1:$GW_PORT"
  metrics_listen: ""
  threads: 1
  grace_period: 1s
  drain_delay: 0s
  pid_file: $OUT/modelgate.pid
  upgrade_sock: $OUT/modelgate.sock
providers:
  mock: { kind: openai, base_url: "http://127.0.0.1:$MOCK_PORT", credentials: ["sk-provider"] }
  claude: { kind: anthropic, base_url: "http://127.0.0.1:$MOCK_PORT", credentials: ["sk-ant"] }
  claude-sse: { kind: anthropic, base_url: "http://127.0.0.1:$MOCK_PORT/sse", credentials: ["sk-ant"] }
models:
  gpt-4o-mini: { targets: [{ provider: mock }] }
  claude-bench: { targets: [{ provider: claude, model: claude-mock }] }
  claude-stream: { targets: [{ provider: claude-sse, model: claude-mock }] }
keys:
  - { name: bench, key: sk-bench-key }
EOF
cat > "$OUT/post.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench-key"
wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello!"}]}'
EOF

sed -e 's/"model":"gpt-4o-mini"/"model":"claude-bench"/' "$OUT/post.lua" > "$OUT/post-translated.lua"
sed -e 's/"model":"gpt-4o-mini"/"model":"claude-stream","stream":true/' "$OUT/post.lua" > "$OUT/post-translated-sse.lua"
# Codex's protocol: a Responses stream translated to Anthropic.
sed -e 's/wrk.body = .*/wrk.body = \x27{"model":"claude-stream","stream":true,"instructions":"Be brief.","input":[{"role":"user","content":"Hello!"}]}\x27/' "$OUT/post.lua" > "$OUT/post-responses-sse.lua"

pids=()
cleanup() {
  for f in "$OUT"/mock.pid "$OUT"/proxy.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

taskset -c 0 nginx -c "$OUT/mock.conf" -p "$OUT" -e "$OUT/mock.error.log"
taskset -c 1 nginx -c "$OUT/proxy.conf" -p "$OUT" -e "$OUT/proxy.error.log"
RUST_LOG=warn taskset -c 1 "$BIN" -c "$OUT/modelgate.yaml" 2>"$OUT/modelgate.log" &
pids+=($!)
GW_PID=$!
sleep 1
taskset -a -cp 1 "$GW_PID" >/dev/null
for u in "http://127.0.0.1:$MOCK_PORT" "http://127.0.0.1:$PROXY_PORT" "http://127.0.0.1:$GW_PORT"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$u/v1/chat/completions" \
    -H 'Authorization: Bearer sk-bench-key' -H 'Content-Type: application/json' \
    -d '{"model":"gpt-4o-mini","messages":[]}')
  [ "$code" = 200 ] || { echo "$u answered $code"; exit 1; }
done
for body in '{"model":"claude-bench","messages":[{"role":"user","content":"hi"}]}' \
            '{"model":"claude-stream","stream":true,"messages":[{"role":"user","content":"hi"}]}'; do
  out=$(curl -s -X POST "http://127.0.0.1:$GW_PORT/v1/chat/completions" \
    -H 'Authorization: Bearer sk-bench-key' -H 'Content-Type: application/json' -d "$body")
  case "$out" in *'How can I help'*) ;; *) echo "translated path answered: $out"; exit 1 ;; esac
done
out=$(curl -s -X POST "http://127.0.0.1:$GW_PORT/v1/responses" -H 'Authorization: Bearer sk-bench-key' \
  -H 'Content-Type: application/json' -d '{"model":"claude-stream","stream":true,"input":"hi"}')
case "$out" in *'response.completed'*) ;; *) echo "Responses path answered: $out"; exit 1 ;; esac

cpu_ticks() { # sum of utime+stime over pids
  local t=0
  for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  echo $t
}
hwm_kib() { local m=0; for p in "$@"; do v=$(awk '/VmHWM/{print $2}' "/proc/$p/status"); m=$((m + v)); done; echo $m; }

# run NAME URL PIDS... -> "rps p50_ms p99_ms cpu_us_per_req"
one_run() {
  local url=$1; shift
  local path=${URL_PATH:-/v1/chat/completions}
  taskset -c 0 wrk -t1 -c"$CONNS" -d${WARMUP}s -s "$OUT/${SCRIPT:-post.lua}" "$url$path" >/dev/null
  local before; before=$(cpu_ticks "$@")
  local out; out=$(taskset -c 0 wrk -t1 -c"$CONNS" -d${DURATION}s --latency -s "$OUT/${SCRIPT:-post.lua}" "$url$path")
  local after; after=$(cpu_ticks "$@")
  local reqs; reqs=$(echo "$out" | awk '/requests in/{print $1}')
  local non2xx; non2xx=$(echo "$out" | awk '/Non-2xx/{print $NF}')
  [ -z "$non2xx" ] || { echo "non-2xx responses: $non2xx" >&2; }
  local rps; rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
  local p50; p50=$(echo "$out" | awk '$1=="50%"{print $2}')
  local p99; p99=$(echo "$out" | awk '$1=="99%"{print $2}')
  local cpu_us; cpu_us=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v n="$reqs" 'BEGIN{ if (n>0) printf "%.1f", t*1e6/hz/n; else print "nan" }')
  echo "$rps $(to_ms "$p50") $(to_ms "$p99") $cpu_us"
}
to_ms() { awk -v v="$1" 'BEGIN{ n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /ms$/) n=n; else if (v ~ /s$/) n*=1000; printf "%.3f", n }'; }
median() { sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }

declare -A RES
bench() { # label url pids...
  local label=$1; shift
  local rows=()
  for _ in $(seq "$RUNS"); do rows+=("$(one_run "$@")"); done
  local rps p50 p99 cpu
  rps=$(printf '%s\n' "${rows[@]}" | awk '{print $1}' | median)
  p50=$(printf '%s\n' "${rows[@]}" | awk '{print $2}' | median)
  p99=$(printf '%s\n' "${rows[@]}" | awk '{print $3}' | median)
  cpu=$(printf '%s\n' "${rows[@]}" | awk '{print $4}' | median)
  RES[$label]="$rps $p50 $p99 $cpu"
  shift
  printf '| %-28s | %9.0f | %7s | %7s | %10s | %7s |\n' "$label" "$rps" "$p50" "$p99" "$cpu" "$(hwm_kib "$@" | awk '{printf "%.1f", $1/1024}')"
}

MOCK_PIDS=$(pgrep -P "$(cat "$OUT/mock.pid")" | tr '\n' ' ')
PROXY_PIDS=$(pgrep -P "$(cat "$OUT/proxy.pid")" | tr '\n' ' ')
echo "modelgate load benchmark: $RUNS x ${DURATION}s runs (median), wrk -t1 -c$CONNS, proxy pinned to core 1 (1 worker/thread), $(date -u +%FT%TZ)"
echo "| target                       |       RPS | p50 ms  | p99 ms  | CPU us/req | RSS MiB |"
echo "|------------------------------|-----------|---------|---------|------------|---------|"
# shellcheck disable=SC2086
bench "direct to the mock" "http://127.0.0.1:$MOCK_PORT" $MOCK_PIDS
# shellcheck disable=SC2086
bench "nginx plain proxy" "http://127.0.0.1:$PROXY_PORT" $PROXY_PIDS
bench "modelgate passthrough" "http://127.0.0.1:$GW_PORT" "$GW_PID"
SCRIPT=post-translated.lua bench "modelgate OpenAI->Anthropic" "http://127.0.0.1:$GW_PORT" "$GW_PID"
SCRIPT=post-translated-sse.lua bench "modelgate OpenAI->Anthropic SSE" "http://127.0.0.1:$GW_PORT" "$GW_PID"
URL_PATH=/v1/responses SCRIPT=post-responses-sse.lua bench "modelgate Responses->Anthropic SSE" "http://127.0.0.1:$GW_PORT" "$GW_PID"
read -r n_rps _ _ n_cpu <<<"${RES[nginx plain proxy]}"
read -r g_rps _ _ g_cpu <<<"${RES[modelgate passthrough]}"
awk -v a="$g_rps" -v b="$n_rps" -v c="$g_cpu" -v d="$n_cpu" \
  'BEGIN{printf "modelgate / nginx: RPS %.2fx, CPU per request %.2fx\n", a/b, c/d}'
for t in "modelgate OpenAI->Anthropic" "modelgate OpenAI->Anthropic SSE" "modelgate Responses->Anthropic SSE"; do
  read -r _ _ _ t_cpu <<<"${RES[$t]}"
  awk -v c="$t_cpu" -v d="$n_cpu" -v n="$t" 'BEGIN{printf "%s / nginx plain proxy: CPU per request %.2fx\n", n, c/d}'
done
