# Shared by the memory benchmarks (sourced): loopback ports, the one-provider gateway
# config they run, and waiting for it to answer.

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# write_config FILE GW_PORT MOCK_PORT MODEL KEY [SERVER_LINES]: an in-memory store, the
# mock as provider p serving MODEL, one key KEY.
write_config() {
  local file=$1 gw=$2 mock=$3 model=$4 key=$5 extra=${6:-}
  local dir; dir=$(cd "$(dirname "$file")" && pwd)
  cat > "$file" <<YAML
server:
  listen: "127.0.0.1:$gw"
  metrics_listen: ""
  grace_period: 1s
  drain_delay: 0s
  pid_file: $dir/gw.pid
  upgrade_sock: $dir/gw.sock
$extra
store: { url: memory }
providers:
  p: { kind: openai, base_url: "http://127.0.0.1:$mock", credentials: [c] }
models:
  $model: { targets: [{ provider: p }] }
keys:
  - { name: k, key: $key }
YAML
}

# wait_healthy PORT: up to 10 s for /health.
wait_healthy() {
  for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$1/health" >/dev/null && return 0
    sleep 0.1
  done
  echo "the gateway on port $1 did not start" >&2
  return 1
}
