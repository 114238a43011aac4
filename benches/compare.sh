#!/usr/bin/env bash
# Before/after benchmark (not a test): passthrough chat completions through two modelgate
# binaries and the bare Pingora floor, in one run, rounds interleaved so that machine drift
# hits every row alike. The proxy under test is pinned to core 1, wrk and the nginx mock
# to core 0; CPU per request is the proxy's utime+stime over the run. Loopback only.
#
# Usage: benches/compare.sh BEFORE_BIN AFTER_BIN BARE_PINGORA_BIN [ROUNDS=3] [SECONDS=10]
# AFTER_KEY (fields added to the bench key) and AFTER_CONFIG (sections appended, $OUT is
# the output folder) configure only the after binary, e.g. budgets and a store:
#   AFTER_KEY='budgets: [{ usd: 1000000, period: month }]' \
#   AFTER_CONFIG='store: { url: "sqlite://$OUT/ledger.db" }' benches/compare.sh ...
# STREAM_EVENTS=N: the mock streams N chunks (and the usage chunk) to every request.
# TARGET_MODEL names the provider's model (both binaries): a name other than the public
# one makes the gateway rename the model in every response body.
# BEFORE_CONFIG: sections for the before binary only (e.g. `store: { url: memory }`).
# KEY_FIELDS and CONFIG (same forms) apply to both binaries, e.g. limits and budgets
# when AFTER_CONFIG turns cluster mode on for the after one only.
# AFTER_KEYS=N adds N more config keys to the after config; AFTER_API_KEYS=N makes N keys
# through the after binary's keys API first (its AFTER_CONFIG must give it a store file
# and management: { secret_key: sk-bench-admin }) and has wrk use one more API key
# against it, so an API key is authenticated among N (the before binary's wrk key stays
# the config key sk-bench-1234).
# Needs: nginx (Debian nginx-light), wrk, taskset, curl. The bare Pingora proxy listens on
# BARE_LISTEN and proxies to BARE_UPSTREAM with the key sk-bench-1234; it runs with
# BARE_NO_STEAL=1 (one runtime per worker thread, as modelgate does).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/nginx.sh
. benches/lib/nginx.sh
BEFORE=$1 AFTER=$2 BARE=$3
ROUNDS=${4:-3} DURATION=${5:-10}
OUT=benches/out/compare
mkdir -p "$OUT/tmp"
OUT=$(cd "$OUT" && pwd)
rm -f "$OUT/post.after.lua"
MOCK=19101 GW=19102 BARE_PORT=19103
HZ=$(getconf CLK_TCK)
for tool in nginx wrk taskset curl; do
  command -v $tool >/dev/null || { echo "missing $tool (apt-get install nginx-light wrk util-linux curl)"; exit 1; }
done

CHAT='{"id":"chatcmpl-mock","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today?"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":9,"total_tokens":18}}'
CTYPE=application/json
if [ -n "${STREAM_EVENTS:-}" ]; then
  # A streamed answer of STREAM_EVENTS chunks, its usage chunk and [DONE].
  CTYPE=text/event-stream
  CHAT=$(
    for i in $(seq "$STREAM_EVENTS"); do
      printf 'data: {"id":"chatcmpl-mock","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"word%s "},"finish_reason":null}]}\n\n' "$i"
    done
    printf 'data: {"id":"chatcmpl-mock","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":%s,"total_tokens":%s}}\n\ndata: [DONE]\n\n' "$STREAM_EVENTS" "$((STREAM_EVENTS + 9))"
  )
fi
nginx_mock_conf "$OUT" "$MOCK" "$CTYPE" "$CHAT"
# The config of each binary: the bench key with its fields, more keys, more sections.
config() { # KEY_FIELDS EXTRA_KEYS SECTIONS
  cat <<EOF
server: { listen: "127.0.0.1:$GW", metrics_listen: "", threads: 1, grace_period: 1s, drain_delay: 0s, pid_file: $OUT/mg.pid, upgrade_sock: $OUT/mg.sock }
providers:
  mock: { kind: openai, base_url: "http://127.0.0.1:$MOCK", credentials: ["sk-provider"] }
models:
  gpt-4o-mini: { targets: [{ provider: mock${TARGET_MODEL:+, model: $TARGET_MODEL}}] }
keys:
  - { name: bench, key: sk-bench-1234${1:+, $1} }
EOF
  if [ "${2:-0}" -gt 0 ]; then
    awk -v n="$2" 'BEGIN{for(i=0;i<n;i++) printf "  - { name: extra%d, key: sk-extra-%012d-padding }\n", i, i}'
  fi
  printf '%s\n' "${3//\$OUT/$OUT}"
}
AFTER_FIELDS="${KEY_FIELDS:-}${KEY_FIELDS:+${AFTER_KEY:+, }}${AFTER_KEY:-}"
config "${KEY_FIELDS:-}" 0 "${CONFIG:-}
${BEFORE_CONFIG:-}" > "$OUT/modelgate.yaml"
config "$AFTER_FIELDS" "${AFTER_KEYS:-0}" "${CONFIG:-}
${AFTER_CONFIG:-}" > "$OUT/modelgate.after.yaml"
cat > "$OUT/post.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench-1234"
wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello!"}]STREAM}'
EOF
# (Set apart: a `}` inside ${VAR:+...} would end the expansion early.)
STREAM_FIELDS=""
[ -n "${STREAM_EVENTS:-}" ] && STREAM_FIELDS=',"stream":true,"stream_options":{"include_usage":true}'
sed -i "s|STREAM|$STREAM_FIELDS|" "$OUT/post.lua"

PID=""
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
  [ -f "$OUT/mock.pid" ] && kill "$(cat "$OUT/mock.pid")" 2>/dev/null || true
}
trap cleanup EXIT
taskset -c 0 nginx -c "$OUT/mock.conf" -p "$OUT" -e "$OUT/mock.error.log"

start() { # label -> PID, URL
  case $1 in
    bare) BARE_NO_STEAL=1 BARE_LISTEN=127.0.0.1:$BARE_PORT BARE_UPSTREAM=127.0.0.1:$MOCK taskset -c 1 "$BARE" >"$OUT/bare.log" 2>&1 &
          URL=http://127.0.0.1:$BARE_PORT ;;
    *) bin=$BEFORE conf=$OUT/modelgate.yaml
       [ "$1" = after ] && bin=$AFTER conf=$OUT/modelgate.after.yaml
       RUST_LOG=warn taskset -c 1 "$bin" -c "$conf" >"$OUT/$1.log" 2>&1 &
       URL=http://127.0.0.1:$GW ;;
  esac
  PID=$!
  for _ in $(seq 50); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$URL/v1/chat/completions" \
      -H 'Authorization: Bearer sk-bench-1234' -H 'Content-Type: application/json' \
      -d '{"model":"gpt-4o-mini","messages":[]}' || true)
    [ "$code" = 200 ] && break
    sleep 0.1
  done
  [ "$code" = 200 ] || { echo "$1 answered $code"; exit 1; }
  taskset -a -cp 1 "$PID" >/dev/null
}
ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }

if [ -n "${AFTER_API_KEYS:-}" ]; then
  start after
  python3 - "$URL" "$AFTER_API_KEYS" "$OUT/api-secret" <<'PY'
import http.client, json, sys, urllib.parse
url, n = urllib.parse.urlparse(sys.argv[1]), int(sys.argv[2])
c = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
have = 0
c.request("GET", "/v0/management/keys", headers={"Authorization": "Bearer sk-bench-admin"})
r = c.getresponse(); body = json.loads(r.read())
have = sum(1 for k in body.get("keys", []) if k["source"] == "api")
for i in range(have, n):
    c.request("POST", "/v0/management/keys", json.dumps({"name": f"api{i}"}),
              {"Authorization": "Bearer sk-bench-admin", "Content-Type": "application/json"})
    r = c.getresponse(); r.read()
    if r.status != 201:
        sys.exit(f"key {i}: {r.status}")
print(f"API keys in the store: {n} ({n - have} made now)", file=sys.stderr)
# The key wrk uses against the after binary: an API key of its own, made anew each run.
auth = {"Authorization": "Bearer sk-bench-admin", "Content-Type": "application/json"}
c.request("DELETE", "/v0/management/keys/bench-api", headers=auth); c.getresponse().read()
c.request("POST", "/v0/management/keys", json.dumps({"name": "bench-api"}), auth)
r = c.getresponse(); secret = json.loads(r.read())["key"]
open(sys.argv[3], "w").write(secret)
PY
  kill -INT "$PID"; wait "$PID" 2>/dev/null || true; PID=""
  sleep 0.5
  sed "s|sk-bench-1234|$(cat "$OUT/api-secret")|" "$OUT/post.lua" > "$OUT/post.after.lua"
fi

echo "| round | target | RPS | p50 ms | p99 ms | CPU us/req |"
echo "|---|---|---|---|---|---|"
for round in $(seq "$ROUNDS"); do
  for label in bare before after; do
    start $label
    lua=$OUT/post.lua
    [ "$label" = after ] && [ -f "$OUT/post.after.lua" ] && lua=$OUT/post.after.lua
    taskset -c 0 wrk -t1 -c16 -d2s -s "$lua" "$URL/v1/chat/completions" >/dev/null
    t0=$(ticks)
    out=$(taskset -c 0 wrk -t1 -c16 -d"${DURATION}"s --latency -s "$lua" "$URL/v1/chat/completions")
    t1=$(ticks)
    reqs=$(echo "$out" | awk '/requests in/{print $1}')
    echo "$out" | grep -q Non-2xx && { echo "$label: non-2xx responses; stopping (see $OUT/$label.log)" >&2; exit 1; }
    rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
    p50=$(echo "$out" | awk '$1=="50%"{print $2}')
    p99=$(echo "$out" | awk '$1=="99%"{print $2}')
    cpu=$(awk -v t=$((t1 - t0)) -v hz="$HZ" -v n="$reqs" 'BEGIN{printf "%.1f", t*1e6/hz/n}')
    echo "| $round | $label | $rps | $p50 | $p99 | $cpu |"
    kill -INT "$PID"; wait "$PID" 2>/dev/null || true; PID=""   # SIGINT: Pingora's fast shutdown
    sleep 0.5
  done
done
