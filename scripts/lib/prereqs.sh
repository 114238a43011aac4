# shellcheck shell=bash
# Prerequisite checks shared by scripts/demo.sh and scripts/test.sh. Source it, then call
#   prereqs_ensure build          # what `cargo build` needs: cargo, a C compiler, make, cmake
#   prereqs_ensure build python   # ... plus python3 with venv/ensurepip, for the SDK tests
#   prereqs_ensure postgres       # Debian's postgresql server, for the store tests
#   prereqs_ensure redis          # Debian's redis-server, for the cluster tests
#   prereqs_ensure browser        # Debian's chromium and chromedriver, for the console tests
# Missing Debian packages are installed when this is possible without a password (running
# as root, or passwordless `sudo -n`); otherwise it prints the one command to run and
# returns 1. MODELGATE_NO_INSTALL=1 never installs: it only reports.

# Rust installed with rustup but the shell not restarted yet: use it anyway.
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  PATH="$HOME/.cargo/bin:$PATH"
fi

# Prints the Debian packages missing for the given needs, one per line.
prereqs_missing() {
  local need
  for need in "$@"; do
    case "$need" in
      build)
        command -v cc >/dev/null 2>&1 || echo gcc        # ring, mimalloc, zlib-ng are C
        command -v make >/dev/null 2>&1 || echo make     # cmake's default generator
        command -v cmake >/dev/null 2>&1 || echo cmake   # pingora's zlib-ng
        ;;
      python)
        if ! command -v python3 >/dev/null 2>&1; then
          echo python3
          echo python3-venv
        elif ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
          echo python3-venv
        fi
        command -v kill >/dev/null 2>&1 || echo procps   # the tests signal the gateway
        ;;
      promtool)
        command -v promtool >/dev/null 2>&1 || echo prometheus
        ;;
      postgres)
        # The store tests start their own throwaway Postgres server.
        compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || echo postgresql
        ;;
      redis)
        # The cluster tests start their own throwaway redis-server.
        command -v redis-server >/dev/null 2>&1 || echo redis-server
        ;;
      browser)
        # The console tests drive a headless Chromium through its driver.
        command -v chromium >/dev/null 2>&1 || echo chromium
        command -v chromedriver >/dev/null 2>&1 || echo chromium-driver
        ;;
      *)
        echo "prereqs.sh: unknown need '$need'" >&2
        return 2
        ;;
    esac
  done
}

# Checks cargo and the given needs; installs missing Debian packages when it can.
prereqs_ensure() {
  if ! command -v cargo >/dev/null 2>&1; then
    echo "modelgate: cargo (Rust) is not installed. Install it with rustup:" >&2
    echo "  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh" >&2
    return 1
  fi
  local missing
  missing=$(prereqs_missing "$@") || return 2
  [ -z "$missing" ] && return 0
  # shellcheck disable=SC2086 # one package per word
  set -- $missing
  local cmd="apt-get install -y --no-install-recommends $*"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "modelgate: missing prerequisites (Debian package names): $*" >&2
    echo "  install the equivalent packages with your system's package manager" >&2
    return 1
  fi
  local can_install=1
  if [ "${MODELGATE_NO_INSTALL:-0}" = 1 ]; then
    can_install=0
  elif [ -n "$sudo" ] && ! { command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; }; then
    can_install=0
  fi
  if [ "$can_install" = 0 ]; then
    echo "modelgate: missing Debian packages: $*" >&2
    echo "  install them with:  ${sudo:+sudo }apt-get update && ${sudo:+sudo }$cmd" >&2
    return 1
  fi
  echo "modelgate: installing missing Debian packages: $*" >&2
  local run=(env DEBIAN_FRONTEND=noninteractive)
  if [ -n "$sudo" ]; then
    run=(sudo -n env DEBIAN_FRONTEND=noninteractive)
  fi
  "${run[@]}" apt-get update -qq &&
    "${run[@]}" apt-get install -y -qq --no-install-recommends "$@" || {
      echo "modelgate: installing $* failed; try:  ${sudo:+sudo }apt-get update && ${sudo:+sudo }$cmd" >&2
      return 1
    }
}
