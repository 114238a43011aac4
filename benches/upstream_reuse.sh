#!/usr/bin/env bash
# Upstream connection reuse (not a test): REQUESTS sequential chat requests on one client
# connection (wrk -c1) through one modelgate to a keep-alive mock provider, which counts
# the connections it accepted. Ideal: 1 upstream connection (each request finds the one
# the previous request returned to the pool). Prints the count and how many times the
# gateway logged a failed pool pick-up. Loopback only; bounded by SECONDS.
#
# Usage: benches/upstream_reuse.sh [BIN=target/release/modelgate] [SECONDS=10] [THREADS=2]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/modelgate} SECONDS_=${2:-10} THREADS=${3:-2}
OUT=benches/out/upstream_reuse
rm -rf "$OUT"; mkdir -p "$OUT"
# shellcheck source=lib/memory.sh
. benches/lib/memory.sh
MOCK_PORT=$(free_port) GW_PORT=$(free_port)

cat > "$OUT/mock.py" <<'PY'
import http.server, sys, json, threading
accepted = 0
lock = threading.Lock()
BODY = json.dumps({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
  "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi", "refusal": None},
  "finish_reason": "stop", "logprobs": None}],
  "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True   # headers and body are two writes: no 40 ms delayed-ACK stall
    def setup(self):
        global accepted
        super().setup()
        with lock:
            accepted += 1
    def do_GET(self):
        body = str(accepted).encode()
        self.send_response(200); self.send_header("content-length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(200); self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(BODY))); self.end_headers(); self.wfile.write(BODY)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
python3 "$OUT/mock.py" "$MOCK_PORT" & MOCK=$!
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$MOCK_PORT/count" >/dev/null && break; sleep 0.1; done
write_config "$OUT/gw.yaml" "$GW_PORT" "$MOCK_PORT" m sk-reuse-bench-0001 "  threads: $THREADS"
"$BIN" -c "$OUT/gw.yaml" 2> "$OUT/gw.log" & GW=$!
trap 'kill $GW $MOCK 2>/dev/null || true' EXIT
wait_healthy "$GW_PORT"
cat > "$OUT/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"model":"m","messages":[{"role":"user","content":"hi"}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-reuse-bench-0001"
LUA
wrk -t1 -c1 -d"${SECONDS_}s" -s "$OUT/post.lua" "http://127.0.0.1:$GW_PORT/v1/chat/completions" > "$OUT/wrk.txt"
requests=$(awk '/requests in/ {print $1}' "$OUT/wrk.txt")
conns=$(( $(curl -s "http://127.0.0.1:$MOCK_PORT/count") - 2 ))   # less the readiness and this query
misses=$(grep -c "failed to acquire reusable stream" "$OUT/gw.log" || true)
echo "$requests sequential requests (threads: $THREADS): $conns upstream connections, $misses failed pool pick-ups"
grep -E "Non-2xx|Socket errors" "$OUT/wrk.txt" || true
