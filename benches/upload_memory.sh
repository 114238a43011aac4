#!/usr/bin/env bash
# Memory benchmark (not a test): N concurrent multipart uploads of SIZE_MB each through
# one modelgate with max_body_bytes = LIMIT_MB, to a mock provider that reads and drops
# the body. Prints the gateway's peak RSS (VmHWM) and its RSS when idle before and after.
# Loopback only; bounded: one round of N uploads, each with a 120 s timeout.
#
# Usage: benches/upload_memory.sh [BIN=target/release/modelgate] [N=20] [SIZE_MB=50] [LIMIT_MB=100] [length|chunked]
# `chunked` sends the forms without a Content-Length (Transfer-Encoding: chunked).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/modelgate} N=${2:-20} SIZE=${3:-50} LIMIT=${4:-100} MODE=${5:-length}
framing=()
[ "$MODE" = chunked ] && framing=(-H 'Transfer-Encoding: chunked')
OUT=benches/out/upload_memory
rm -rf "$OUT"; mkdir -p "$OUT"
# shellcheck source=lib/memory.sh
. benches/lib/memory.sh
MOCK_PORT=$(free_port) GW_PORT=$(free_port)

# The provider: reads each body to the end, answers a transcription.
cat > "$OUT/mock.py" <<'PY'
import http.server, sys, json
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        n = int(self.headers.get("content-length", "0")); left = n
        while left > 0:
            left -= len(self.rfile.read(min(left, 1 << 20)))
        body = json.dumps({"text": f"{n} bytes"}).encode()
        self.send_response(200); self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
python3 "$OUT/mock.py" "$MOCK_PORT" & MOCK=$!
write_config "$OUT/gw.yaml" "$GW_PORT" "$MOCK_PORT" whisper sk-upload-bench-1 "  max_body_bytes: $((LIMIT * 1024 * 1024))"
"$BIN" -c "$OUT/gw.yaml" 2> "$OUT/gw.log" & GW=$!
trap 'kill $GW $MOCK 2>/dev/null || true' EXIT
wait_healthy "$GW_PORT"
head -c $((SIZE * 1024 * 1024)) /dev/urandom > "$OUT/audio.bin"
rss() { awk "/^$1:/ {print \$2}" "/proc/$GW/status"; }
echo "idle RSS before: $(( $(rss VmRSS) / 1024 )) MiB"
start=$(date +%s.%N)
for i in $(seq "$N"); do
  curl -s -m 120 -o "$OUT/answer.$i" -w '%{http_code}\n' "http://127.0.0.1:$GW_PORT/v1/audio/transcriptions" \
    -H 'Authorization: Bearer sk-upload-bench-1' "${framing[@]}" -F file=@"$OUT/audio.bin" -F model=whisper > "$OUT/status.$i" &
done
wait $(jobs -p | grep -v -e "^$GW\$" -e "^$MOCK\$") 2>/dev/null || true
end=$(date +%s.%N)
ok=$(cat "$OUT"/status.* | grep -c '^200$' || true)
echo "$N uploads of $SIZE MiB, $MODE (max_body_bytes $LIMIT MiB): $ok answered 200 in $(echo "$end - $start" | bc) s"
echo "peak RSS (VmHWM): $(( $(rss VmHWM) / 1024 )) MiB"
for wait in 1 10; do
  sleep "$wait"
  echo "RSS ${wait}s later: $(( $(rss VmRSS) / 1024 )) MiB"
done
