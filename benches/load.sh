#!/usr/bin/env bash
# Load benchmark (not a test): the same POST /v1/chat/completions load, in one run, against
#   the nginx static mock directly (the ceiling), nginx as a plain reverse proxy to it,
#   a bare Pingora proxy (examples/bare_pingora.rs: key check and credential swap on the
#   gateway's own Pingora build: the floor), crabllm (a Rust LLM gateway from crates.io,
#   when CRABLLM names its binary), and modelgate with everything on (a key with rpm/tpm
#   limits and a budget, the usage ledger on a SQLite file): passthrough, OpenAI client ->
#   Anthropic provider (JSON and SSE), Responses SSE -> Anthropic provider.
# The proxy under test is pinned to core 1 (all its threads), wrk and the mock to core 0;
# rounds are interleaved (every row once per round) so machine drift hits all alike.
# Prints RPS, p50/p99 latency, the proxy's CPU microseconds per request (utime+stime from
# /proc/PID/stat over the run, medians of the rounds), peak RSS, and the ratios to the
# bare-Pingora row against issue 19's targets. Loopback only; every run is bounded.
#
# Usage: benches/load.sh [RUNS=3] [SECONDS=10] [CONNECTIONS=16]
# CRABLLM=path/to/crabllm adds its rows (cargo install --locked crabllm --root DIR).
# BIN and BARE name prebuilt modelgate and bare-Pingora binaries (else both are built).
# Needs: nginx (Debian nginx-light), wrk, taskset, curl; builds modelgate and the bare
# proxy in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
DURATION=${2:-10}
CONNS=${3:-16}
WARMUP=2
OUT=benches/out
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
MOCK_PORT=19001 PROXY_PORT=19002 GW_PORT=19003 BARE_PORT=19004 CRAB_PORT=19005
CLK_TCK=$(getconf CLK_TCK)

for tool in nginx wrk taskset; do
  command -v $tool >/dev/null || { echo "missing $tool (apt-get install nginx-light wrk util-linux)"; exit 1; }
done
if [ -z "${BIN:-}" ] || [ -z "${BARE:-}" ]; then
  cargo build --release --quiet --bin modelgate --example bare_pingora
fi
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/modelgate}
BARE=${BARE:-${CARGO_TARGET_DIR:-target}/release/examples/bare_pingora}
rm -f "$OUT"/ledger.db*

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
store: { url: "sqlite://$OUT/ledger.db" }
keys:
  - name: bench
    key: sk-bench-key
    limits: { rpm: 100000000, tpm: 100000000000 }
    budgets: [{ usd: 1000000, period: month }]
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

# crabllm's config: the same two providers and models, one key (written when CRABLLM is set).
crabllm_config() {
  cat <<EOF
listen = "127.0.0.1:$CRAB_PORT"
[[keys]]
name = "bench"
key = "sk-bench-key"
models = ["gpt-4o-mini", "claude-bench"]
[providers.mock]
kind = "openai"
base_url = "http://127.0.0.1:$MOCK_PORT/v1"
api_key = "sk-provider"
models = ["gpt-4o-mini"]
[providers.claude]
kind = "anthropic"
base_url = "http://127.0.0.1:$MOCK_PORT/v1"
api_key = "sk-ant"
models = ["claude-bench"]
EOF
}

pids=()
cleanup() {
  for f in "$OUT"/mock.pid "$OUT"/proxy.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill -INT "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

taskset -c 0 nginx -c "$OUT/mock.conf" -p "$OUT" -e "$OUT/mock.error.log"
taskset -c 1 nginx -c "$OUT/proxy.conf" -p "$OUT" -e "$OUT/proxy.error.log"
RUST_LOG=warn taskset -c 1 "$BIN" -c "$OUT/modelgate.yaml" 2>"$OUT/modelgate.log" &
GW_PID=$!
pids+=("$GW_PID")
BARE_LISTEN=127.0.0.1:$BARE_PORT BARE_UPSTREAM=127.0.0.1:$MOCK_PORT BARE_KEY=sk-bench-key BARE_NO_STEAL=1 \
  taskset -c 1 "$BARE" >"$OUT/bare.log" 2>&1 &
BARE_PID=$!
pids+=("$BARE_PID")
CRAB_PID=
if [ -n "${CRABLLM:-}" ]; then
  # crabllm: the same two providers and models, one key, one tokio worker on the same core.
  crabllm_config > "$OUT/crabllm.toml"
  TOKIO_WORKER_THREADS=1 RUST_LOG=warn taskset -c 1 "$CRABLLM" serve --config "$OUT/crabllm.toml" >"$OUT/crabllm.log" 2>&1 &
  CRAB_PID=$!
  pids+=("$CRAB_PID")
fi
sleep 1
taskset -a -cp 1 "$GW_PID" >/dev/null
taskset -a -cp 1 "$BARE_PID" >/dev/null
[ -z "$CRAB_PID" ] || taskset -a -cp 1 "$CRAB_PID" >/dev/null
check() { # url body pattern
  local out
  out=$(curl -s -X POST "$1" -H 'Authorization: Bearer sk-bench-key' -H 'Content-Type: application/json' -d "$2")
  case "$out" in *$3*) ;; *) echo "$1 answered: $out"; exit 1 ;; esac
}
for port in $MOCK_PORT $PROXY_PORT $BARE_PORT $GW_PORT ${CRAB_PID:+$CRAB_PORT}; do
  check "http://127.0.0.1:$port/v1/chat/completions" '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}' 'How can I help'
done
for port in $GW_PORT ${CRAB_PID:+$CRAB_PORT}; do
  check "http://127.0.0.1:$port/v1/chat/completions" '{"model":"claude-bench","messages":[{"role":"user","content":"hi"}]}' '"chat.completion"'
done
check "http://127.0.0.1:$GW_PORT/v1/chat/completions" '{"model":"claude-stream","stream":true,"messages":[{"role":"user","content":"hi"}]}' 'How can I help'
check "http://127.0.0.1:$GW_PORT/v1/responses" '{"model":"claude-stream","stream":true,"input":"hi"}' 'response.completed'

cpu_ticks() { # sum of utime+stime over pids
  local t=0
  for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  echo $t
}
hwm_kib() { local m=0; for p in "$@"; do v=$(awk '/VmHWM/{print $2}' "/proc/$p/status"); m=$((m + v)); done; echo $m; }
to_ms() { awk -v v="$1" 'BEGIN{ n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /ms$/) n=n; else if (v ~ /s$/) n*=1000; printf "%.3f", n }'; }
median() { sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }

# one_run SCRIPT URL PIDS... -> "rps p50_ms p99_ms cpu_us_per_req"
one_run() {
  local script=$1 url=$2; shift 2
  taskset -c 0 wrk -t1 -c"$CONNS" -d${WARMUP}s -s "$OUT/$script" "$url" >/dev/null
  local before; before=$(cpu_ticks "$@")
  local out; out=$(taskset -c 0 wrk -t1 -c"$CONNS" -d${DURATION}s --latency -s "$OUT/$script" "$url")
  local after; after=$(cpu_ticks "$@")
  local reqs; reqs=$(echo "$out" | awk '/requests in/{print $1}')
  local non2xx; non2xx=$(echo "$out" | awk '/Non-2xx/{print $NF}')
  [ -z "$non2xx" ] || { echo "non-2xx responses from $url: $non2xx" >&2; }
  local rps; rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
  local p50; p50=$(echo "$out" | awk '$1=="50%"{print $2}')
  local p99; p99=$(echo "$out" | awk '$1=="99%"{print $2}')
  local cpu_us; cpu_us=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v n="$reqs" 'BEGIN{ if (n>0) printf "%.1f", t*1e6/hz/n; else print "nan" }')
  echo "$rps $(to_ms "$p50") $(to_ms "$p99") $cpu_us"
}

MOCK_PIDS=$(pgrep -P "$(cat "$OUT/mock.pid")" | tr '\n' ' ')
PROXY_PIDS=$(pgrep -P "$(cat "$OUT/proxy.pid")" | tr '\n' ' ')
CHAT=/v1/chat/completions
# label|wrk script|url|pids
ROWS=(
  "direct to the mock|post.lua|http://127.0.0.1:$MOCK_PORT$CHAT|$MOCK_PIDS"
  "nginx plain proxy|post.lua|http://127.0.0.1:$PROXY_PORT$CHAT|$PROXY_PIDS"
  "bare Pingora|post.lua|http://127.0.0.1:$BARE_PORT$CHAT|$BARE_PID"
)
if [ -n "$CRAB_PID" ]; then
  ROWS+=("crabllm passthrough|post.lua|http://127.0.0.1:$CRAB_PORT$CHAT|$CRAB_PID")
  ROWS+=("crabllm OpenAI->Anthropic|post-translated.lua|http://127.0.0.1:$CRAB_PORT$CHAT|$CRAB_PID")
fi
ROWS+=(
  "modelgate passthrough|post.lua|http://127.0.0.1:$GW_PORT$CHAT|$GW_PID"
  "modelgate OpenAI->Anthropic|post-translated.lua|http://127.0.0.1:$GW_PORT$CHAT|$GW_PID"
  "modelgate OpenAI->Anthropic SSE|post-translated-sse.lua|http://127.0.0.1:$GW_PORT$CHAT|$GW_PID"
  "modelgate Responses->Anthropic SSE|post-responses-sse.lua|http://127.0.0.1:$GW_PORT/v1/responses|$GW_PID"
)
declare -A RUNS_OF
for round in $(seq "$RUNS"); do
  for row in "${ROWS[@]}"; do
    IFS='|' read -r label script url rowpids <<<"$row"
    # shellcheck disable=SC2086
    RUNS_OF[$label]+="$(one_run "$script" "$url" $rowpids)"$'\n'
  done
  echo "round $round of $RUNS done" >&2
done

declare -A RES
echo "modelgate load benchmark: $RUNS interleaved rounds of ${DURATION}s (medians), wrk -t1 -c$CONNS, proxies pinned to core 1 (1 worker thread), $(date -u +%FT%TZ)"
echo "| target                             |       RPS | p50 ms  | p99 ms  | CPU us/req | RSS MiB |"
echo "|------------------------------------|-----------|---------|---------|------------|---------|"
for row in "${ROWS[@]}"; do
  IFS='|' read -r label _ _ rowpids <<<"$row"
  runs=${RUNS_OF[$label]}
  col() { printf '%s' "$runs" | awk -v c="$1" 'NF{print $c}' | median; }
  rps=$(col 1) p50=$(col 2) p99=$(col 3) cpu=$(col 4)
  RES[$label]="$rps $cpu"
  # shellcheck disable=SC2086
  printf '| %-34s | %9.0f | %7s | %7s | %10s | %7s |\n' "$label" "$rps" "$p50" "$p99" "$cpu" \
    "$(hwm_kib $rowpids | awk '{printf "%.1f", $1/1024}')"
done
read -r _ b_cpu <<<"${RES[bare Pingora]}"
echo
echo "CPU per request against the bare-Pingora row (issue 19's targets):"
for t in "modelgate passthrough|1.10" "modelgate OpenAI->Anthropic|1.30" \
         "modelgate OpenAI->Anthropic SSE|1.50" "modelgate Responses->Anthropic SSE|1.80"; do
  IFS='|' read -r label target <<<"$t"
  read -r _ c <<<"${RES[$label]}"
  awk -v c="$c" -v b="$b_cpu" -v n="$label" -v t="$target" \
    'BEGIN{r=c/b; printf "  %-36s %.2fx (target <= %.2fx: %s)\n", n, r, t, (r <= t ? "met" : "not met")}'
done
if [ -n "$CRAB_PID" ]; then
  echo "against crabllm (RPS, CPU per request):"
  for pair in "modelgate passthrough|crabllm passthrough" "modelgate OpenAI->Anthropic|crabllm OpenAI->Anthropic"; do
    IFS='|' read -r ours theirs <<<"$pair"
    read -r r1 c1 <<<"${RES[$ours]}"
    read -r r2 c2 <<<"${RES[$theirs]}"
    awk -v r1="$r1" -v c1="$c1" -v r2="$r2" -v c2="$c2" -v n="$ours" \
      'BEGIN{printf "  %-36s RPS %.2fx, CPU %.2fx of crabllm (%s)\n", n, r1/r2, c1/c2, (r1 > r2 && c1 < c2 ? "ahead" : "not ahead")}'
  done
fi
