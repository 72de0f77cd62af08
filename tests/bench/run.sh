#!/usr/bin/env bash
# The benchmark of issue 8: buildproxy against direct HTTPS (nginx) and a
# nix-buildproxy-style mitmproxy replay, in one invocation. See README.md
# beside this file for the workloads and how to read the table.
#
#   tests/bench/run.sh                 # everything, 5 rounds, 1 GiB file
#   tests/bench/run.sh --runs 3 --only W1,W3 --no-mitm
#   tests/bench/run.sh --help          # every option (bench.py's)
#   tests/bench/run.sh --before old=OLD  # another build in the same rounds
#
# Installs what it needs: nginx, curl, openssl and python3-venv from Debian
# (apt-get, as root; nix-bin for W7, git and fcgiwrap for W8), mitmproxy
# from PyPI into a venv under the target dir, and builds buildproxy with
# `cargo build --release`. Scratch data (a 1 GiB file, 2,000 small ones, a
# git repository, logs) goes to $CARGO_TARGET_DIR/bench (default
# target/bench); the raw numbers go to tests/bench/results/<date>-<host>.json.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$TARGET/bench
MITMPROXY_VERSION=11.0.2

missing=()
command -v nginx >/dev/null || missing+=(nginx-light)
command -v curl >/dev/null || missing+=(curl)
command -v openssl >/dev/null || missing+=(openssl)
command -v python3 >/dev/null || missing+=(python3)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
# W7 (Nix evaluation) runs nix-instantiate; only install it when asked for.
if [[ " $* " == *" --only "* || " $* " == *" --only="* ]]; then
    only=$(printf '%s\n' "$@" | sed -n 's/^--only=//p')
    [[ -n $only ]] || only=$(printf '%s\n' "$@" | sed -n '/^--only$/{n;p}')
else
    only=W7,W8
fi
if [[ ,${only^^}, == *,W7,* ]] && ! command -v nix-instantiate >/dev/null; then
    missing+=(nix-bin)
fi
# W8 (git clone) serves git http-backend through fcgiwrap behind nginx.
if [[ ,${only^^}, == *,W8,* ]]; then
    command -v git >/dev/null || missing+=(git)
    command -v fcgiwrap >/dev/null || [[ -x /usr/sbin/fcgiwrap ]] || missing+=(fcgiwrap)
fi
if ((${#missing[@]})); then
    echo "bench: installing ${missing[*]} from Debian" >&2
    sudo=()
    [[ $(id -u) == 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >&2
fi

mkdir -p "$WORK"
VENV=$WORK/venv
if ! "$VENV/bin/mitmdump" --version 2>/dev/null | grep -q "Mitmproxy: $MITMPROXY_VERSION"; then
    echo "bench: installing mitmproxy $MITMPROXY_VERSION into $VENV" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "mitmproxy==$MITMPROXY_VERSION" >&2
fi

# BUILDPROXY_BIN=path measures that binary instead (e.g. to compare two
# builds); otherwise the release build of this tree.
if [[ -z ${BUILDPROXY_BIN:-} ]]; then
    echo "bench: cargo build --release" >&2
    (cd "$ROOT" && cargo build --release -p buildproxy >&2)
    BUILDPROXY_BIN=$TARGET/release/buildproxy
    BUILD="release build of $(git -C "$ROOT" describe --always --dirty)"
else
    BUILD="BUILDPROXY_BIN=$BUILDPROXY_BIN"
fi
# W9 loads the misbehave fixture and a replay plugin by path: the
# components build.rs left in the newest release OUT_DIR.
fixtures=$(ls -td "$TARGET"/release/build/buildproxy-*/out 2>/dev/null |
    while read -r d; do [[ -f $d/misbehave.wasm ]] && echo "$d" && break; done || true)

exec "$VENV/bin/python" "$ROOT/tests/bench/bench.py" \
    --bin "$BUILDPROXY_BIN" \
    --work "$WORK" \
    --results "$ROOT/tests/bench/results" \
    --mitmdump "$VENV/bin/mitmdump" \
    --build "$BUILD" \
    ${fixtures:+--fixtures "$fixtures"} \
    "$@"
