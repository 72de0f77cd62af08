#!/usr/bin/env bash
# The whole test suite on a machine that has Rust (rustup) and Debian's
# package manager and nothing else: installs what the tests need when it is
# missing (the wasm32 target, Nix, the real clients listed in tests/tools.txt),
# then runs every test. Re-runs install nothing. README's quick start and
# .ci/run both call exactly this. Arguments go to `cargo test` (a filter, say).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*" >&2; }

# --- Debian packages for the programs the tests run ---------------------------
# A package is installed only when the program it provides is missing: a
# machine may already have a tool from elsewhere (a Node with its own npm, say),
# and Debian's package would conflict with it.
missing=()
while read -r program package; do
  case "$program" in '' | '#'*) continue ;; esac
  if ! command -v "$program" >/dev/null 2>&1; then
    [[ " ${missing[*]-} " == *" $package "* ]] || missing+=("$package")
  fi
done < tests/tools.txt
# git's smart HTTP test server, and pip, are not programs on PATH.
[ -x /usr/lib/git-core/git-http-backend ] || [ -x "$(git --exec-path 2>/dev/null)/git-http-backend" ] ||
  [[ " ${missing[*]-} " == *" git "* ]] || missing+=(git)
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
if ((${#missing[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "tests/run.sh: the tests need these Debian packages: ${missing[*]}" >&2
    echo "install them (sudo apt-get install --no-install-recommends ${missing[*]}) and run again" >&2
    exit 1
  fi
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# uv is not a Debian package: it comes from the Python package index, into
# a directory of the suite's own (--target: Debian's Python refuses installs
# into itself, PEP 668), put first on PATH for the tests.
tools="$PWD/target/test-tools"
export PATH="$tools/bin:$PATH"
if ! command -v uv >/dev/null 2>&1; then
  log "python3 -m pip install --target $tools uv"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target "$tools" uv
fi

# --- Rust: plugins are built for wasm32-unknown-unknown -------------------------
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "rustup target add wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

# --- the tests ------------------------------------------------------------------
# Nix is used as Debian ships it (no nixbld group, no daemon, no nix.conf):
# the tests pass what they need on the command line, nothing is set here.
# --no-fail-fast: one failing test binary must not hide the others' results.
status=0
log "example/plugin (a packager's own plugin, its native tests)"
cargo test --manifest-path example/plugin/Cargo.toml || status=1
log "cargo test --workspace"
cargo test --workspace --no-fail-fast "$@" || status=1
exit "$status"
