#!/usr/bin/env python3
"""Two (or more) buildproxy builds against each other and direct, on W2's
small-file workload, round after round in rotating order.

For a change to a hot path, the ratio between builds measured in the same
rounds says more than two separate runs of the benchmark on a shared
machine, and the proxy CPU per request (from /proc) says more than either.

    target/bench/venv/bin/python tests/bench/compare.py \\
        --mode replay --connections 1 --runs 8 OLD_BINARY NEW_BINARY

--mode replay serves the files from content (W2); --mode proxy fetches
them from nginx through `buildproxy proxy` with the bundled chain (W5);
--mode bare does the same with --no-default-plugins. Needs the data and
PKI that run.sh makes (run it once first, e.g. with --only W3 --runs 3).
"""

import argparse
import statistics
import subprocess
import types
from pathlib import Path

import bench


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("binaries", nargs="+", help="buildproxy binaries to compare")
    ap.add_argument("--mode", choices=("replay", "proxy", "bare"), default="replay")
    ap.add_argument("--connections", type=int, default=1, help="1 = W2 seq, 8 = W2 par")
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--small-count", type=int, default=2000)
    ap.add_argument("--work", default=str(Path(__file__).resolve().parents[2] / "target/bench"))
    args = ap.parse_args()
    if args.runs < 3:
        ap.error("--runs must be at least 3")

    b = bench.Bench(types.SimpleNamespace(
        bin=args.binaries[0], work=args.work, runs=args.runs, size_mib=1024,
        small_count=args.small_count, no_mitm=True, mitmdump=None))
    b.make_data()
    b.make_pki()
    b.start_nginx()
    b.write_content()
    b.warm_cache = b.work / "plugin-cache"
    proxies, procs = {"direct": None}, {}
    try:
        for i, path in enumerate(args.binaries):
            b.bin = Path(path).resolve()
            subprocess.run([str(b.bin), "plugins", "--precompile", str(b.warm_cache)],
                           check=True, capture_output=True)
            name = f"{i + 1}: {b.bin.name}"
            if args.mode == "replay":
                p, url = b.start_replay()
            else:
                extra = ["--no-default-plugins"] if args.mode == "bare" else []
                p, url = b.start_buildproxy(
                    ["proxy", "--upstream-ca", str(b.ca_cert), *extra], f"compare-{i + 1}")
            proxies[name], procs[name] = url, p
        systems = list(proxies)
        for s in systems:  # warm-up: leaf certificates, page cache, pools
            b.many(proxies[s], args.connections)
        runs = b.rounds(f"{args.mode}, {args.connections} connection(s)", systems,
                        lambda s: b.many(proxies[s], args.connections))
        requests = args.small_count * (args.runs + 1)
        print(f"\n{args.mode}, {args.small_count} × 4 KiB over {args.connections} "
              f"connection(s), medians of {args.runs} rounds\n")
        for s in systems:
            med = statistics.median(r["req_s"] for r in runs[s])
            line = f"{s:40s} {med:7.0f} req/s"
            if s != "direct":
                ratio = bench.paired_ratio(runs, s, "req_s")
                cpu = bench.proc_status(procs[s].pid)["cpu_s"] / requests * 1e6
                line += f"  {ratio:.2f}× direct  {cpu:.0f} µs CPU/req"
            print(line)
    finally:
        b.stop_all()


if __name__ == "__main__":
    main()
