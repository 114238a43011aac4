#!/usr/bin/env bash
# End-to-end client suite: drives the real coding CLIs (Claude Code, Codex, Gemini CLI),
# pinned in package.json, against `modelgate --demo` (whose mock providers check requests
# the way the real APIs do), same-vendor and cross-vendor, and checks that each CLI printed
# the demo mock's answer and that the gateway answered every request of the run with a 2xx.
#
#   tests/clients/run.sh                     # every case
#   CASES='codex|gemini/claude' tests/clients/run.sh   # cases whose name matches an ERE
#   CAPTURE=1 KEEP=1 tests/clients/run.sh    # log every request (logproxy.py) and keep the work dir
#
# Env: MODELGATE_BIN (default: <repo>/target/debug/modelgate), CLI_TIMEOUT (default 180 s
# per CLI run), KNOWN_FAILURES (space-separated case names reported as XFAIL, not failures).
# Only loopback addresses are used; every CLI runs with its own temporary HOME/XDG dirs,
# telemetry, auto-update and nonessential traffic off.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BIN="${MODELGATE_BIN:-$ROOT/target/debug/modelgate}"
CLI_TIMEOUT="${CLI_TIMEOUT:-180}"
CASES="${CASES:-.}"
KNOWN_FAILURES="${KNOWN_FAILURES:-}"
KEY=sk-modelgate-demo

[[ -x "$BIN" ]] || { echo "run.sh: gateway binary not found: $BIN (set MODELGATE_BIN)" >&2; exit 2; }
command -v node >/dev/null || { echo "run.sh: node is required" >&2; exit 2; }

if [[ ! -d "$HERE/node_modules/@anthropic-ai/claude-code" || ! -d "$HERE/node_modules/@openai/codex" \
      || ! -d "$HERE/node_modules/@google/gemini-cli" ]]; then
  echo "run.sh: installing the CLIs (npm ci)"
  # A registry hiccup should not fail the suite: three tries.
  for try in 1 2 3; do
    (cd "$HERE" && timeout 600 npm ci --no-audit --no-fund >&2) && break
    [[ $try == 3 ]] && { echo "run.sh: npm ci failed three times" >&2; exit 2; }
    sleep 5
  done
fi
NM="$HERE/node_modules/.bin"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/mg-clients.XXXXXX")"
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ "${KEEP:-0}" == 1 ]]; then echo "run.sh: work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# N distinct free loopback ports (held open together, so none is handed out twice).
free_ports() {
  python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

wait_http() { # URL: wait up to 15 s for it to answer
  local i
  for i in $(seq 1 150); do
    curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

read -r GW_PORT METRICS_PORT PROXY_PORT <<<"$(free_ports 3)"
# The access records are how each case's requests are checked: always on.
RUST_LOG="${RUST_LOG:-info},modelgate::access=info" "$BIN" --demo --listen "127.0.0.1:$GW_PORT" \
  --metrics-listen "127.0.0.1:$METRICS_PORT" >"$WORK/gateway.out" 2>"$WORK/gateway.log" &
PIDS+=("$!")
wait_http "http://127.0.0.1:$GW_PORT/health" || { echo "run.sh: gateway did not start" >&2; cat "$WORK/gateway.log" >&2; exit 1; }
PORT="$GW_PORT"
if [[ "${CAPTURE:-0}" == 1 ]]; then
  PORT="$PROXY_PORT"
  python3 "$HERE/logproxy.py" "$PORT" "$GW_PORT" "$WORK/requests.jsonl" &
  PIDS+=("$!")
  wait_http "http://127.0.0.1:$PORT/health" || { echo "run.sh: logproxy did not start" >&2; exit 1; }
fi
BASE="http://127.0.0.1:$PORT"

# A fresh HOME with XDG dirs for one run; prints its path.
new_home() {
  local h; h="$(mktemp -d "$WORK/home.XXXXXX")"
  mkdir -p "$h/work" "$h/.config" "$h/.cache" "$h/.local/share" "$h/.local/state"
  echo "$h"
}
# The environment every CLI starts from (env -i: nothing inherited but PATH), in BASE_ENV.
base_env() { # HOME
  BASE_ENV=(PATH="$PATH" HOME="$1" USER=modelgate-test TERM=dumb NO_COLOR=1 LANG=C.UTF-8
    XDG_CONFIG_HOME="$1/.config" XDG_CACHE_HOME="$1/.cache" XDG_DATA_HOME="$1/.local/share"
    XDG_STATE_HOME="$1/.local/state")
}

# --- one runner per CLI: run_<cli> HOME MODEL MODE ; stdout/stderr to $HOME/out, $HOME/err

run_claude() {
  local h=$1 model=$2 mode=$3 tools
  mkdir -p "$h/.claude"
  echo '{"hasCompletedOnboarding": true}' >"$h/.claude/.claude.json"
  if [[ $mode == tool ]]; then tools=Read; else tools=""; fi
  base_env "$h"
  (cd "$h/work" && env -i "${BASE_ENV[@]}" CLAUDE_CONFIG_DIR="$h/.claude" \
    ANTHROPIC_BASE_URL="$BASE" ANTHROPIC_API_KEY="$KEY" \
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 DISABLE_AUTOUPDATER=1 DISABLE_TELEMETRY=1 \
    DISABLE_ERROR_REPORTING=1 \
    timeout --kill-after=10 "$CLI_TIMEOUT" "$NM/claude" -p "Say hello to modelgate" --model "$model" \
      --tools "$tools" --no-session-persistence \
    >"$h/out" 2>"$h/err" </dev/null)
}

run_codex() {
  local h=$1 model=$2 mode=$3
  mkdir -p "$h/.codex"
  cat >"$h/.codex/config.toml" <<EOF
model = "$model"
model_provider = "modelgate"
approval_policy = "never"
sandbox_mode = "read-only"
check_for_update_on_startup = false

[model_providers.modelgate]
name = "modelgate"
base_url = "$BASE/v1"
env_key = "MODELGATE_API_KEY"
wire_api = "responses"
$([[ $mode == ws ]] && echo "supports_websockets = true")

[analytics]
enabled = false

[feedback]
enabled = false

[otel]
exporter = "none"
log_user_prompt = false

[features]
plugins = false
remote_plugin = false
apps = false
image_generation = false
api_key_model_discovery = false
EOF
  local effort=()
  # think: reasoning on, so thinking (and its signature) must survive the tool round trip.
  if [[ $mode == think ]]; then effort=(-c 'model_reasoning_effort="high"'); fi
  base_env "$h"
  (cd "$h/work" && env -i "${BASE_ENV[@]}" CODEX_HOME="$h/.codex" MODELGATE_API_KEY="$KEY" \
    RUST_LOG=warn \
    timeout --kill-after=10 "$CLI_TIMEOUT" "$NM/codex" exec --skip-git-repo-check --strict-config --ephemeral \
      --color never "${effort[@]}" "Say hello to modelgate" \
    >"$h/out" 2>"$h/err" </dev/null)
}

run_gemini() {
  local h=$1 model=$2 mode=$3
  mkdir -p "$h/.gemini"
  cat >"$h/.gemini/settings.json" <<'EOF'
{
  "general": {"enableAutoUpdate": false, "enableAutoUpdateNotification": false},
  "privacy": {"usageStatisticsEnabled": false},
  "telemetry": {"enabled": false},
  "ide": {"enabled": false, "hasSeenNudge": true},
  "security": {"auth": {"selectedType": "gemini-api-key"}, "folderTrust": {"enabled": false}}
}
EOF
  base_env "$h"
  (cd "$h/work" && env -i "${BASE_ENV[@]}" GEMINI_CLI_HOME="$h" \
    GEMINI_CLI_SYSTEM_SETTINGS_PATH="$h/none/settings.json" \
    GEMINI_CLI_SYSTEM_DEFAULTS_PATH="$h/none/system-defaults.json" \
    GEMINI_CLI_TRUST_WORKSPACE=true GEMINI_CLI_NO_RELAUNCH=true GEMINI_TELEMETRY_ENABLED=false \
    GOOGLE_GEMINI_BASE_URL="$BASE" GEMINI_API_KEY="$KEY" \
    timeout --kill-after=10 "$CLI_TIMEOUT" "$NM/gemini" -m "$model" -p "Say hello to modelgate" \
    >"$h/out" 2>"$h/err" </dev/null)
}

# --- cases: NAME CLI MODEL MODE EXPECTED-SUBSTRING
# text: no tools offered, the mock echoes; tool: the mock calls the first tool offered and
# answers "The tool returned: ..." once the CLI sends the result back (a full round trip).
# Codex and Gemini CLI always offer tools, so their cases are tool round trips.
HELLO="Hello from the modelgate demo provider!"
TOOL="The tool returned:"
CASE_LIST=(
  "claude/claude-demo/text  claude claude-demo text $HELLO"
  "claude/gpt-4o-mini/text  claude gpt-4o-mini text $HELLO"
  "claude/gemini-demo/text  claude gemini-demo text $HELLO"
  "claude/claude-demo/tool  claude claude-demo tool $TOOL"
  "claude/gpt-4o-mini/tool  claude gpt-4o-mini tool $TOOL"
  "claude/gemini-demo/tool  claude gemini-demo tool $TOOL"
  "codex/gpt-4o-mini/tool   codex  gpt-4o-mini tool $TOOL"
  "codex/claude-demo/tool   codex  claude-demo tool $TOOL"
  "codex/gemini-demo/tool   codex  gemini-demo tool $TOOL"
  "codex/claude-demo/think  codex  claude-demo think $TOOL"
  "codex/gemini-demo/think  codex  gemini-demo think $TOOL"
  "codex/gpt-4o-mini/ws     codex  gpt-4o-mini ws $TOOL"
  "gemini/gemini-demo/tool  gemini gemini-demo tool $TOOL"
  "gemini/claude-demo/tool  gemini claude-demo tool $TOOL"
  "gemini/gpt-4o-mini/tool  gemini gpt-4o-mini tool $TOOL"
)

pass=0 fail=0 xfail=0 ran=0
SUMMARY=()
for line in "${CASE_LIST[@]}"; do
  read -r name cli model mode expected <<<"$line"
  [[ $name =~ $CASES ]] || continue
  ran=$((ran + 1))
  h="$(new_home)"
  start=$SECONDS
  rc=0
  seen=$(wc -l <"$WORK/gateway.log")
  "run_$cli" "$h" "$model" "$mode" || rc=$?
  secs=$((SECONDS - start))
  sleep 0.2   # the last access record is written just after its response
  # This case's requests, and those the gateway did not answer with a 2xx (a CLI may
  # recover from a 400 by retrying differently; that is still a failure of the route).
  records=$(tail -n "+$((seen + 1))" "$WORK/gateway.log" | grep 'modelgate::access' || true)
  served=$(grep -c . <<<"$records" || true)
  refused=$(grep -v ' status=2' <<<"$records" | grep -c . || true)
  # ws: Codex asks for the Responses WebSocket first; the gateway's 426 sends it to HTTP
  # at once (the case's time shows there is no retry delay).
  upgrades=$(grep -c ' status=426' <<<"$records" || true)
  [[ $mode == ws ]] && refused=$((refused - upgrades))
  why=""
  if [[ $rc == 124 ]]; then why="timed out after ${CLI_TIMEOUT}s"
  elif [[ $rc != 0 ]]; then why="exit $rc"
  elif ! grep -qF -- "$expected" "$h/out"; then why="answer not found: '$expected'"
  elif [[ -z $records ]]; then why="no request reached the gateway"
  elif [[ $refused != 0 ]]; then why="$refused of $served request(s) answered non-2xx"
  elif [[ $mode == ws && $upgrades == 0 ]]; then why="no WebSocket upgrade was asked for"
  fi
  if [[ -z $why ]]; then
    verdict=PASS; pass=$((pass + 1))
  elif [[ " $KNOWN_FAILURES " == *" $name "* ]]; then
    verdict=XFAIL; xfail=$((xfail + 1))
  else
    verdict=FAIL; fail=$((fail + 1))
  fi
  SUMMARY+=("$(printf '%-5s %-26s %3ss %s' "$verdict" "$name" "$secs" "$why")")
  echo "${SUMMARY[-1]}"
  if [[ $verdict != PASS ]]; then
    echo "  --- stdout (tail)"; tail -n 15 "$h/out" | sed 's/^/  | /'
    echo "  --- stderr (tail)"; tail -n 15 "$h/err" | sed 's/^/  | /'
    echo "  --- gateway (non-2xx)"; grep 'modelgate::access' "$WORK/gateway.log" | grep -v ' status=2' | tail -n 5 | sed 's/^/  | /' || true
  fi
done

echo
echo "=== client e2e summary (gateway: $BIN)"
printf '%s\n' "${SUMMARY[@]}"
[[ $ran -gt 0 ]] || { echo "run.sh: no case matched CASES='$CASES'" >&2; exit 2; }
if [[ $xfail -gt 0 ]]; then
  echo "$pass passed, $fail failed, $xfail skipped"
else
  echo "$pass passed, $fail failed"
fi
[[ $fail == 0 ]]
