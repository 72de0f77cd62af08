#!/bin/sh
# A build that insists on downloading while it runs, like a CMake
# FetchContent or a Gradle build: it fetches a source archive and a config
# file over HTTPS, checks them, and "builds" from them.
set -eu
base=${DEMO_BASE:?set by run.sh}
mkdir -p out
curl -fsS "$base/deps/zlib-1.3.1.tar.gz" -o out/zlib.tar.gz
curl -fsS --compressed "$base/config/settings.json?channel=stable" -o out/settings.json
tar -xzf out/zlib.tar.gz -C out
echo "built with $(cat out/zlib-1.3.1/VERSION) and $(grep -o '"mode": *"[a-z]*"' out/settings.json)"
