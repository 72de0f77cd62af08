#!/bin/sh
# The heavy load run: by default 200 concurrent curl clients x 50 requests,
# bodies from 1 KiB to 64 MiB, HTTP/1.1 and h2, through `buildproxy capture
# --store` and then `buildproxy replay --store`. It is the end-to-end test
# tests/e2e/load.rs with bigger numbers (CI runs the same test with 50 x 20,
# up to 16 MiB): zero errors and every body's hash are asserted; the time,
# throughput and buildproxy's peak RSS (VmHWM) of each phase are printed.
#
#   tests/load/run.sh                      # 200 x 50, up to 64 MiB
#   CLIENTS=50 REQUESTS=20 MAX_MIB=16 tests/load/run.sh
#   PROFILE=release tests/load/run.sh      # an optimised buildproxy
#
# Needs curl, and room in $TMPDIR for the store (the distinct bodies, about
# 400 MiB at 64 MiB max). The weights favour small bodies as real builds
# do: about 5 GB cross the proxy in each phase at the defaults.
set -eu
cd "$(dirname "$0")/../.."
# 200 clients, each with a connection to the proxy and the proxy's own to
# the upstream.
ulimit -n 65536 2>/dev/null || ulimit -n 8192 2>/dev/null || true
export BUILDPROXY_LOAD_CLIENTS="${CLIENTS:-200}"
export BUILDPROXY_LOAD_REQUESTS="${REQUESTS:-50}"
export BUILDPROXY_LOAD_MAX_MIB="${MAX_MIB:-64}"
exec cargo test --profile "${PROFILE:-dev}" --test e2e -- --exact \
    load::concurrent_clients_capture_and_replay_every_body_intact --nocapture
