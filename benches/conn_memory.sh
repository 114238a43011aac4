#!/usr/bin/env bash
# Memory benchmark (not a test): the gateway's RSS per idle kept-alive client connection
# and per concurrent stream. N client connections each send one request and then stay
# open idle (keep-alive); the RSS growth over the idle baseline, divided by N, is the
# cost of one idle connection. Then N concurrent streaming requests to a mock that
# streams slowly (one event every 200 ms for 20 s): the RSS growth while all are open,
# divided by N, is the cost of one stream. Loopback only, bounded (N connections, one
# round each, 60 s timeout).
#
# Usage: benches/conn_memory.sh [BIN=target/release/modelgate] [N=2000]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/modelgate} N=${2:-2000}
OUT=benches/out/conn_memory
rm -rf "$OUT"; mkdir -p "$OUT"
ulimit -n 65536 2>/dev/null || true
# shellcheck source=lib/memory.sh
. benches/lib/memory.sh
MOCK_PORT=$(free_port) GW_PORT=$(free_port)

# The provider: chat completions, or a slow stream when "stream": true.
cat > "$OUT/mock.py" <<'PY'
import asyncio, json, sys
CHAT = json.dumps({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi", "refusal": None}, "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode()
async def handle(r, w):
    try:
        while True:
            head = await r.readuntil(b"\r\n\r\n")
            n = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    n = int(line.split(b":")[1])
            body = await r.readexactly(n)
            if b'"stream":true' in body.replace(b" ", b""):
                w.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
                for i in range(100):
                    ev = b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}]}\n\n'
                    w.write(b"%x\r\n%s\r\n" % (len(ev), ev)); await w.drain(); await asyncio.sleep(0.2)
                w.write(b"0\r\n\r\n"); await w.drain()
            else:
                w.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(CHAT), CHAT)); await w.drain()
    except Exception:
        pass
async def main():
    s = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    await s.serve_forever()
asyncio.run(main())
PY
python3 "$OUT/mock.py" "$MOCK_PORT" & MOCK=$!
write_config "$OUT/gw.yaml" "$GW_PORT" "$MOCK_PORT" m sk-conn-bench-1 "  threads: 2"
GW=
start_gateway() {
  if [ -n "$GW" ]; then kill "$GW"; wait "$GW" 2>/dev/null || true; fi
  "$BIN" -c "$OUT/gw.yaml" 2>> "$OUT/gw.log" & GW=$!
  wait_healthy "$GW_PORT"
}
trap 'kill $GW $MOCK 2>/dev/null || true' EXIT

# The clients: N connections, one request each, then idle (or N concurrent streams).
cat > "$OUT/clients.py" <<'PY'
import asyncio, sys, os
port, n, mode, pid = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS:"): return int(l.split()[1])
async def one(i, started):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    body = b'{"model":"m","messages":[{"role":"user","content":"hi"}]%s}' % (b',"stream":true' if mode == "stream" else b"")
    w.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer sk-conn-bench-1\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
    await w.drain()
    head = await r.readuntil(b"\r\n\r\n")
    if mode == "idle":
        n = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0].split(b":")[1])
        await r.readexactly(n)
    else:
        await r.readuntil(b"\n\n")  # the first event: the stream is open
    started.append(1)
    return r, w
async def main():
    base = rss()
    started = []
    conns = []
    for k in range(0, n, 200):
        conns += await asyncio.gather(*(one(i, started) for i in range(k, min(n, k + 200))))
    await asyncio.sleep(2)
    during = rss()
    print(f"{mode}: {len(started)} connections, RSS {base/1024:.1f} -> {during/1024:.1f} MiB, {(during-base)/len(started):.1f} KiB each")
    for r, w in conns:
        w.close()
asyncio.run(asyncio.wait_for(main(), 60))
PY
# Each phase on a fresh gateway, so freed memory of one does not hide the next's.
start_gateway
python3 "$OUT/clients.py" "$GW_PORT" "$N" idle "$GW"
start_gateway
python3 "$OUT/clients.py" "$GW_PORT" "$(( N / 4 ))" stream "$GW"
