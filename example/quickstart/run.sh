#!/usr/bin/env bash
# The main job, on a fresh machine, with no internet: build buildproxy, run
# build.sh once under `buildproxy capture` against a local HTTPS server, then
# run it again under `buildproxy replay` in a network namespace that has no
# network at all, and compare.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=$(mktemp -d)
server=
# Only our server: `kill 0` would signal the caller's whole process group.
trap 'if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; fi; rm -rf "$work"' EXIT

# BUILDPROXY_BIN: a buildproxy already built (the test suite passes the one
# cargo just built; a nested cargo would wait on the suite's build lock).
# Everything the demo runs besides cargo, checked before anything is built.
missing=
for need in curl:curl python3:python3 openssl:openssl tar:tar unshare:util-linux ip:iproute2; do
  command -v "${need%%:*}" >/dev/null 2>&1 || missing="$missing ${need#*:}"
done
if [ -n "$missing" ]; then
  echo "run.sh needs these Debian packages:$missing" >&2
  echo "install them (apt-get install --no-install-recommends$missing) and run again" >&2
  exit 1
fi

bp=${BUILDPROXY_BIN:-}
if [ -z "$bp" ]; then
  rustup target list --installed 2>/dev/null | grep -q wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
  if [ ! -x "$root/target/debug/buildproxy" ]; then
    echo "== building buildproxy and its plugins: the first build compiles wasmtime," >&2
    echo "   about 10-15 minutes on 2 cores (cargo shows its progress); later runs take seconds" >&2
  fi
  cargo build --manifest-path "$root/Cargo.toml" -p buildproxy
  bp="$root/target/debug/buildproxy"
fi

# The "internet": a local HTTPS server with its own CA, made now.
mkdir -p "$work/site/deps/zlib-1.3.1" "$work/site/config"
echo 1.3.1 > "$work/site/deps/zlib-1.3.1/VERSION"
tar -czf "$work/site/deps/zlib-1.3.1.tar.gz" -C "$work/site/deps" zlib-1.3.1
echo '{ "mode": "release" }' > "$work/site/config/settings.json"
python3 "$here/server.py" "$work/site" "$work/server" > "$work/port" &
server=$!
while [ ! -s "$work/port" ]; do sleep 0.1; done
export DEMO_BASE="https://127.0.0.1:$(cat "$work/port")"

cd "$work"
echo "== capture (with network)"
"$bp" capture --proxy-loopback --upstream-ca "$work/server/ca.pem" --store store -- sh "$here/build.sh"
echo
echo "== proxy_content.nix"
cat proxy_content.nix
rm -rf out
kill "$server"; server=
echo
echo "== replay (no network at all: a fresh network namespace, upstream stopped)"
unshare -rn sh -c "ip link set lo up; '$bp' replay --proxy-loopback --store store --strict -- sh '$here/build.sh'"
