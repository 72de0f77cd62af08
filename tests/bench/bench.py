#!/usr/bin/env python3
"""buildproxy against the incumbents, on one machine, in one run.

Started by tests/bench/run.sh (which installs nginx, curl, mitmproxy and
builds buildproxy with `cargo build --release`); see tests/bench/README.md.

Systems, each measured pair by pair with the direct baseline in the same
round, so a noisy neighbour hits both sides of a ratio alike:

- direct:     curl -> nginx over HTTPS, no proxy (the baseline);
- buildproxy: curl -> buildproxy (replay, capture or proxy mode) over a
              CONNECT tunnel it intercepts with a CA made for this run;
- mitm:       curl -> mitmdump with mitm_replay.py, replaying the way
              nix-buildproxy does (scan the list, read the whole file).

Workloads:

- W1  one big file (1 GiB): throughput, proxy peak RSS (VmHWM). Replay
      serves read-only files of a Nix-store-like directory (trusted, as in
      the sandbox) and, as `buildproxy --store`, the same bodies from a
      `--store`, where each is hashed as it is served: the cost of
      verification, in the same rounds.
- W2  2,000 x 4 KiB: `seq` over one kept-alive connection (one curl with
      every URL: curl reuses the connection, checked with num_connects),
      `par` over 8 connections (8 such curls at once): requests/s.
- W3  exec -> first accepted TCP connection (and, for buildproxy, -> the
      `export` lines on stdout), cold (empty plugin cache) and warm
      (`buildproxy plugins --precompile`).
- W4  the big file through `buildproxy capture --store` vs direct (and
      `capture` without `--store`, hashing only): throughput and the
      proxy's CPU seconds per GiB, against the CPU of the two endpoints
      of the direct download in the same round (nginx's workers + curl):
      a capturing proxy does both ends' TLS and socket work, and hashes.
      Also through a second nginx that only relays (TLS 1.3 in and out,
      in-memory buffers): what a proxy that only relays the bytes pays.
- W5  W2 through `buildproxy proxy` (upstream nginx) with the bundled
      chain vs `--no-default-plugins`: the cost of the plugin hooks.
- W6  replay of a prepared content (`buildproxy prepare`) of 1k/10k/100k
      entries: exec -> listening against the one-entry content (the
      floor), the JSON content of the same size, and W2 seq through it
      against direct and against the same entries loaded from the JSON
      (what a lookup in the prepared file costs), with the proxy's peak
      RSS and CPU per request.
- W7  Nix evaluation (`nix-instantiate`) of `mkBuildproxy` on a generated
      proxy_content.nix of 1k/10k/50k entries against instantiating its
      `fetchurl`s alone (the floor): CPU seconds of the evaluator.
- W8  git clone (protocol v2, full and `--depth 1`) of a generated
      repository (1,000 files, 30 commits) from `git http-backend` behind
      nginx over HTTPS (fcgiwrap): direct, through `buildproxy capture
      --store`, and through `buildproxy replay --store` (captured once
      first; the git plugin answers `info/refs` and `git-upload-pack`):
      the clone's wall time, the proxy's CPU and peak RSS.
- W9  W2 replay while a plugin computes to its deadline on another URL
      (the `misbehave` fixture, `loop`, asked for `/boom` over and over by
      another client) against the same proxy while nobody asks for
      `/boom`: the rate unrelated requests keep.

`--before NAME=BIN` (repeatable) adds another build to W1, W2, W4, W5, W6
and W9 as "buildproxy NAME", in the same rounds: e.g. the release build of the
commit before a change, to show what the change did.

Prints a table of medians with ratios to direct, writes every raw number to
tests/bench/results/<date>-<host>.json. Speed is only ever reported here,
never asserted.
"""

import argparse
import base64
import datetime
import hashlib
import json
import os
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SMALL_SIZE = 4096
PAR_CONNECTIONS = 8
CURL_FMT = "%{http_code} %{size_download} %{time_total} %{num_connects}\\n"

# Targets from issue 8: (metric, comparison, value)
TARGETS = {
    "W1": "≥ 0.8× direct MiB/s, RSS ≤ 32 MiB",
    "W2 seq": "≥ 0.8× direct req/s (issue 13: ≥ 0.9×)",
    "W2 par": "≥ 0.6× direct req/s (issue 13: ≥ 0.9×)",
    "W3 warm": "≤ 10 ms",
    "W4": "≥ 0.6× direct MiB/s, RSS ≤ 32 MiB",
    # Issue 17
    "W6 start 10000": "≤ 10 ms",
    "W6 start 100000": "≤ 20 ms",
    "W6 lookup 100000": "≥ 0.9× direct, RSS ≤ 48 MiB",
    "W7 10000": "≤ 1.5× the fetchurls",
    # Issue 14
    "W8": "≤ 2× direct time",
    # Issue 13
    "W9": "≥ 0.8× the quiet rate",
    "W4 cpu": "≤ 2.0 CPU-s/GiB",
}
W6_SIZES = (1000, 10000, 100000)
W7_SIZES = (1000, 10000, 50000)
# W8's repository: files at the tip, commits, files each later commit edits.
W8_FILES, W8_COMMITS, W8_EDITS = 1000, 30, 50
W8_CLONES = {"full": [], "depth 1": ["--depth", "1"]}
# Workloads that serve the generated files (W1-W6, W9) and need them written.
HTTP_DATA = {"W1", "W2", "W3", "W4", "W5", "W6", "W9"}
# W4's relay (`Bench.start_relay`): TLS in and out, nothing else.
RELAY = "nginx relay, TLS both sides"


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra):
    """The caller's environment without proxy variables: every client here
    says explicitly where it goes."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    }
    env.update(extra)
    return env


def proc_status(pid):
    """Peak RSS (VmHWM, KiB) and CPU seconds (user+system) of a live process."""
    hwm = None
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    return {"vmhwm_kib": hwm, "cpu_s": cpu}


def sri_of(path):
    """A file's SHA-256 in SRI form, as entries record it."""
    return "sha256-" + base64.b64encode(hashlib.sha256(path.read_bytes()).digest()).decode()


def wait_connect(port, proc, deadline_s=30.0, poll_s=0.001):
    """Polls until a TCP connect to port succeeds; returns perf_counter then.
    Polls every millisecond: a tighter loop takes a core from the process
    being started on a 2-core machine and slows the very start it measures."""
    end = time.perf_counter() + deadline_s
    while time.perf_counter() < end:
        with socket.socket() as s:
            try:
                s.connect(("127.0.0.1", port))
                return time.perf_counter()
            except OSError:
                pass
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before listening")
        time.sleep(poll_s)
    raise RuntimeError(f"{proc.args[0]} did not listen on {port} within {deadline_s} s")


class Bench:
    def __init__(self, args):
        self.args = args
        self.bin = Path(args.bin).resolve()
        self.work = Path(args.work).resolve()
        self.tests = Path(__file__).resolve().parent
        self.data = self.work / "data"
        self.pki = self.work / "pki"
        self.logs = self.work / "logs"
        self.scratch = self.work / "scratch"
        self.procs = []
        self.groups = set()  # processes whose whole group stop() ends
        for d in (self.data, self.pki, self.logs, self.scratch):
            d.mkdir(parents=True, exist_ok=True)
        self.big_size = args.size_mib << 20
        # {NAME: binary} of --before NAME=BIN
        self.before = {}
        for spec in getattr(args, "before", None) or []:
            name, _, path = spec.partition("=")
            if not path:
                raise SystemExit(f"--before {spec}: give NAME=BIN")
            self.before[name] = Path(path).resolve()
        fixtures = getattr(args, "fixtures", None)
        self.fixtures = Path(fixtures).resolve() if fixtures else None

    # ---------------------------------------------------------------- setup

    def make_data(self):
        big = self.data / "big.bin"
        if not big.exists() or big.stat().st_size != self.big_size:
            log(f"writing {self.args.size_mib} MiB of random data to {big}")
            with open(big, "wb") as f:
                left = self.big_size
                while left:
                    n = min(left, 16 << 20)
                    f.write(os.urandom(n))
                    left -= n
        small = self.data / "small"
        small.mkdir(exist_ok=True)
        for i in range(self.args.small_count):
            p = small / f"{i:05d}.bin"
            if not p.exists():
                p.write_bytes(os.urandom(SMALL_SIZE))
        # Like the Nix store (the sandbox case): read-only files, which
        # replay trusts as it trusts /nix/store when NIX_STORE_DIR points
        # here; `make_store` gives the same bodies as a `--store`, verified.
        for p in [big, *small.iterdir()]:
            p.chmod(0o444)

    def make_store(self):
        """A `capture --store` directory holding the same bodies (hard
        links), so `replay --store` (which hashes every body it serves) runs
        against the same bytes as the Nix-store case."""
        import base64
        import hashlib
        self.store = self.work / "store"
        blobs = self.store / "blobs" / "sha256"
        blobs.mkdir(parents=True, exist_ok=True)
        entries = []
        files = [(self.small_url(i), self.data / "small" / f"{i:05d}.bin")
                 for i in range(self.args.small_count)]
        files.append((f"{self.base}/big.bin", self.data / "big.bin"))
        for url, path in files:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            blob = blobs / h.hexdigest()
            if not blob.exists():
                os.link(path, blob)
            entries.append({"url": url, "method": "GET", "status_code": 200, "headers": {},
                            "file": f"blobs/sha256/{h.hexdigest()}",
                            "hash": "sha256-" + base64.b64encode(h.digest()).decode()})
        (self.store / "index.json").write_text(json.dumps(entries))

    def make_pki(self):
        """A CA made now (EC P-256, PKCS#8 key) and nginx's leaf signed by it.
        buildproxy (--ca-cert/--ca-key) and mitmproxy (confdir) use the same
        CA, so curl trusts all three systems with one bundle."""
        p = self.pki
        for f in p.glob("*"):
            if f.is_file():
                f.unlink()

        def ossl(*a):
            subprocess.run(["openssl", *a], check=True, capture_output=True)

        ec = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
        ossl("genpkey", *ec, "-out", str(p / "ca.key"))
        ossl(
            "req", "-x509", "-new", "-key", str(p / "ca.key"), "-sha256", "-days", "2",
            "-subj", "/CN=buildproxy bench CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
            "-out", str(p / "ca.pem"),
        )
        ossl("genpkey", *ec, "-out", str(p / "server.key"))
        ossl("req", "-new", "-key", str(p / "server.key"), "-subj", "/CN=127.0.0.1",
             "-out", str(p / "server.csr"))
        (p / "server.ext").write_text(
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
            "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"
        )
        ossl("x509", "-req", "-in", str(p / "server.csr"), "-CA", str(p / "ca.pem"),
             "-CAkey", str(p / "ca.key"), "-CAcreateserial", "-days", "2", "-sha256",
             "-extfile", str(p / "server.ext"), "-out", str(p / "server.pem"))
        mitm = p / "mitm"
        shutil.rmtree(mitm, ignore_errors=True)
        mitm.mkdir()
        (mitm / "mitmproxy-ca.pem").write_text(
            (p / "ca.key").read_text() + (p / "ca.pem").read_text()
        )
        self.ca_cert, self.ca_key = p / "ca.pem", p / "ca.key"

    def write_nginx_conf(self, d, port, http, server):
        """`d`/nginx.conf: an HTTPS server on 127.0.0.1:`port` with the test
        CA's server certificate, its files under `d`; `http` and `server`
        are the lines of those blocks that differ between W2's file server
        and W8's git server. TLS 1.3 as well as 1.2, as registries speak it:
        nginx before 1.23.4 offers only up to 1.2 unless told."""
        user = "user root;\n" if os.geteuid() == 0 else ""
        temps = "".join(f"  {k}_temp_path {d}/{k};\n"
                        for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (d / "nginx.conf").write_text(
            f"""{user}worker_processes auto;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
{http}{temps}  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {self.pki}/server.pem;
    ssl_certificate_key {self.pki}/server.key;
    ssl_protocols TLSv1.2 TLSv1.3;
{server}  }}
}}
""")

    def run_nginx(self, d, port, name):
        """nginx with `d`/nginx.conf (`write_nginx_conf`), once it accepts
        connections on `port`."""
        p = self.spawn(["nginx", "-p", str(d), "-c", str(d / "nginx.conf"),
                        "-e", str(d / "error.log")], name)
        wait_connect(port, p)
        return p

    def start_nginx(self):
        d = self.work / "nginx"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
        self.nginx_port = free_port()
        self.write_nginx_conf(
            d, self.nginx_port,
            http="  access_log off;\n"
                 "  default_type application/octet-stream;\n"
                 "  keepalive_requests 1000000;\n"
                 "  keepalive_timeout 300s;\n",
            server=f"    root {self.data};\n")
        self.nginx = self.run_nginx(d, self.nginx_port, "nginx")
        self.base = f"https://127.0.0.1:{self.nginx_port}"
        log(f"nginx on {self.base}")

    def start_relay(self):
        """W4's reference for a capturing proxy: a second nginx that relays the
        origin's files, terminating TLS on both sides (TLS 1.3 both ways, as
        a capture speaks) and doing nothing else: no hash, no store, no
        plugins. Buffers in memory only (`proxy_max_temp_file_size 0`), so
        it never writes the body to disk."""
        d = self.work / "nginx-relay"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
        self.relay_port = free_port()
        self.write_nginx_conf(
            d, self.relay_port,
            http="  access_log off;\n"
                 "  proxy_http_version 1.1;\n"
                 "  proxy_buffering on;\n"
                 "  proxy_buffer_size 64k;\n"
                 "  proxy_buffers 8 256k;\n"
                 "  proxy_busy_buffers_size 512k;\n"
                 "  proxy_max_temp_file_size 0;\n"
                 "  proxy_ssl_protocols TLSv1.3;\n"
                 # one handshake per download: its check is not the
                 # bulk cost measured here
                 "  proxy_ssl_verify off;\n",
            server=f"    location / {{ proxy_pass https://127.0.0.1:{self.nginx_port}; }}\n")
        self.relay = self.run_nginx(d, self.relay_port, "nginx-relay")
        log(f"nginx relay on https://127.0.0.1:{self.relay_port}")

    def write_content(self):
        """The replay content, in the JSON Nix builds from proxy_content.nix:
        every small file, then the big one. buildproxy and the mitmproxy
        addon read the same file."""
        entries = [
            {"url": self.small_url(i), "status_code": 200, "headers": {},
             "file": str(self.data / "small" / f"{i:05d}.bin")}
            for i in range(self.args.small_count)
        ]
        entries.append({"url": f"{self.base}/big.bin", "status_code": 200, "headers": {},
                        "file": str(self.data / "big.bin")})
        self.content = self.work / "content.json"
        self.content.write_text(json.dumps(entries))
        one = self.work / "content-one.json"
        one.write_text(json.dumps(entries[-1:]))
        self.content_one = one

    def small_url(self, i):
        return f"{self.base}/small/{i:05d}.bin"

    def precompile(self):
        self.warm_cache = self.work / "plugin-cache"
        shutil.rmtree(self.warm_cache, ignore_errors=True)
        # Artifacts are named by the component's hash: builds share the cache.
        for b in (self.bin, *self.before.values()):
            subprocess.run([str(b), "plugins", "--precompile", str(self.warm_cache)],
                           check=True, capture_output=True)

    # ------------------------------------------------------------ processes

    def spawn(self, cmd, name, env=None, stdout=subprocess.DEVNULL):
        err = open(self.logs / f"{name}.log", "ab")
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=stdout, stderr=err,
                             env=env or clean_env(), start_new_session=True)
        self.procs.append(p)
        return p

    def stop(self, p):
        if p.pid in self.groups:
            # Its workers outlive it otherwise (fcgiwrap's do).
            self.groups.discard(p.pid)
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p.stdout:
            p.stdout.close()
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self):
        for p in list(self.procs):
            self.stop(p)

    def bp_common(self):
        return ["--ca-cert", str(self.ca_cert), "--ca-key", str(self.ca_key), "--proxy-loopback"]

    def bp_env(self):
        return clean_env(BUILDPROXY_PLUGIN_CACHE=str(self.warm_cache),
                         NIX_STORE_DIR=str(self.data))

    def start_buildproxy(self, mode_args, name, binary=None):
        """Starts buildproxy serving (no COMMAND): it prints `export` lines
        once listening; returns (process, proxy URL)."""
        cmd = [str(binary or self.bin), *mode_args, *self.bp_common()]
        p = self.spawn(cmd, name, env=self.bp_env(), stdout=subprocess.PIPE)
        for raw in p.stdout:
            line = raw.decode()
            if line.startswith("export http_proxy="):
                return p, line.split("=", 1)[1].strip().strip("'")
        raise RuntimeError(f"{name} exited ({p.wait()}) without printing exports; "
                           f"see {self.logs}/{name}.log")

    def start_replay(self, binary=None, name="buildproxy-replay", extra=()):
        return self.start_buildproxy(
            ["replay", "--content", str(self.content), "--allow-root", str(self.data), *extra],
            name, binary)

    def replay_systems(self):
        """W1's and W2's proxies: replay of read-only files (the sandbox
        case), replay from a `--store` (verified), the `--before` build and
        mitmproxy when asked; returns ({system: proxy URL}, {system: process})."""
        procs = {}
        procs["buildproxy"], bp_url = self.start_replay()
        procs["buildproxy --store"], st_url = self.start_replay_store()
        proxies = {"direct": None, "buildproxy": bp_url, "buildproxy --store": st_url}
        for name, binary in self.before.items():
            procs[f"buildproxy {name}"], proxies[f"buildproxy {name}"] = self.start_replay(
                binary, f"buildproxy-replay-{name}")
        if not self.args.no_mitm:
            procs["mitm"], proxies["mitm"] = self.start_mitm()
        return proxies, procs

    def start_replay_store(self):
        """Replay from `--store`: every body hashed as it is served."""
        return self.start_buildproxy(["replay", "--store", str(self.store)],
                                     "buildproxy-replay-store")

    def start_mitm(self):
        port = free_port()
        cmd = [str(self.args.mitmdump), "-q", "--listen-host", "127.0.0.1", "-p", str(port),
               "--set", f"confdir={self.pki / 'mitm'}", "--set", "connection_strategy=lazy",
               "-s", str(self.tests / "mitm_replay.py")]
        p = self.spawn(cmd, "mitmdump", env=clean_env(NIX_BUILDPROXY_CONTENT=str(self.content)))
        wait_connect(port, p, 60)
        return p, f"http://127.0.0.1:{port}"

    # --------------------------------------------------------------- client

    def curl(self, proxy):
        c = ["curl", "-sS", "--http1.1", "--cacert", str(self.ca_cert)]
        if proxy:
            c += ["--proxy", proxy]
        return c

    def download(self, url, proxy):
        out = subprocess.run(self.curl(proxy) + ["-o", "/dev/null", "-w", CURL_FMT, url],
                             check=True, capture_output=True, env=clean_env(), text=True)
        code, size, total, conns = out.stdout.split()
        if code != "200":
            raise RuntimeError(f"{url} via {proxy or 'direct'}: HTTP {code}")
        return int(size), float(total)

    def big(self, proxy):
        size, total = self.download(f"{self.base}/big.bin", proxy)
        if size != self.big_size:
            raise RuntimeError(f"big.bin via {proxy or 'direct'}: {size} bytes")
        return {"mib_s": size / (1 << 20) / total, "seconds": total}

    def url_config(self, indexes):
        f = tempfile.NamedTemporaryFile("w", dir=self.scratch, suffix=".curlrc", delete=False)
        for i in indexes:
            f.write(f'url = "{self.small_url(i)}"\noutput = "/dev/null"\n')
        f.close()
        return f.name

    def many(self, proxy, connections, count=None):
        """All small files (or the first `count`) over `connections`
        kept-alive connections (one curl each, every URL on its command
        line): requests/s."""
        n = count or self.args.small_count
        configs = [self.url_config(range(k, n, connections)) for k in range(connections)]
        cmd = self.curl(proxy) + ["-w", CURL_FMT]
        t0 = time.perf_counter()
        ps = [subprocess.Popen(cmd + ["-K", c], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=clean_env(), text=True) for c in configs]
        outs = [p.communicate() for p in ps]
        wall = time.perf_counter() - t0
        for c in configs:
            os.unlink(c)
        connects, ok = 0, 0
        for p, (out, err) in zip(ps, outs):
            if p.returncode != 0:
                raise RuntimeError(f"curl failed ({p.returncode}) via {proxy or 'direct'}: {err}")
            for line in out.splitlines():
                code, size, _, conns = line.split()
                ok += code == "200" and int(size) == SMALL_SIZE
                connects += int(conns)
        if ok != n:
            raise RuntimeError(f"only {ok} of {n} small files came back whole via {proxy or 'direct'}")
        if connects != connections:
            raise RuntimeError(f"{connects} connections for {connections} clients via "
                               f"{proxy or 'direct'}: curl did not keep them alive")
        return {"req_s": n / wall, "seconds": wall, "connections": connects}

    # ------------------------------------------------------------ workloads

    def rounds(self, name, systems, measure):
        """`measure(system)` for every system, round after round (the order
        rotates, so none always goes first); returns {system: [runs]}."""
        runs = {s: [] for s in systems}
        for r in range(self.args.runs):
            order = systems[r % len(systems):] + systems[: r % len(systems)]
            for s in order:
                runs[s].append(measure(s))
            log(f"{name} round {r + 1}/{self.args.runs}: "
                + ", ".join(f"{s} {fmt_run(runs[s][-1])}" for s in systems))
        return runs

    def stop_systems(self, procs):
        """Peak RSS and CPU of each proxy, then stops them."""
        status = {s: proc_status(p.pid) for s, p in procs.items()}
        for p in procs.values():
            self.stop(p)
        return status

    def w1(self):
        proxies, procs = self.replay_systems()
        runs = self.rounds("W1", list(proxies), lambda s: self.big(proxies[s]))
        return {"runs": runs, "proxy": self.stop_systems(procs)}

    def w2(self):
        proxies, procs = self.replay_systems()
        systems = list(proxies)
        for s in systems:  # leaf certificates, page cache
            self.many(proxies[s], 1)
        out = {}
        for kind, conns in (("seq", 1), ("par", PAR_CONNECTIONS)):
            out[kind] = {"runs": self.rounds(f"W2 {kind}", systems,
                                             lambda s: self.many(proxies[s], conns))}
        out["proxy"] = self.stop_systems(procs)
        return out

    def startup(self, system):
        port = free_port()
        listen = ["--listen", f"127.0.0.1:{port}"]
        if system == "direct":
            d = self.work / "nginx"
            conf = (d / "nginx.conf").read_text().replace(
                f"127.0.0.1:{self.nginx_port}", f"127.0.0.1:{port}").replace(
                f"{d}/nginx.pid", f"{d}/start.pid")
            (d / "start.conf").write_text(conf)
            cmd = ["nginx", "-p", str(d), "-c", str(d / "start.conf"), "-e", str(d / "error.log")]
            env = clean_env()
        elif system == "mitm":
            cmd = [str(self.args.mitmdump), "-q", "--listen-host", "127.0.0.1", "-p", str(port),
                   "--set", f"confdir={self.pki / 'mitm'}", "--set", "connection_strategy=lazy",
                   "-s", str(self.tests / "mitm_replay.py")]
            env = clean_env(NIX_BUILDPROXY_CONTENT=str(self.content_one))
        else:
            # The default: a fresh CA per run, as a build's replay has.
            cmd = [str(self.bin), "replay", "--content", str(self.content_one),
                   "--allow-root", str(self.data), "--proxy-loopback", *listen]
            if system == "buildproxy cold":
                cache = Path(tempfile.mkdtemp(dir=self.scratch, prefix="cold-cache-"))
            else:
                cache = self.warm_cache
            env = clean_env(BUILDPROXY_PLUGIN_CACHE=str(cache))
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=open(self.logs / "startup.log", "ab"), env=env,
                             start_new_session=True)
        self.procs.append(p)
        t1 = wait_connect(port, p, 60)
        self.stop(p)
        if system == "buildproxy cold":
            shutil.rmtree(cache, ignore_errors=True)
        return {"ms": (t1 - t0) * 1000}

    def exports_time(self, cache, content):
        """exec -> the `export` lines on stdout (what `--detach` and a build
        script wait for)."""
        cmd = [str(self.bin), "replay", "--content", str(content),
               "--allow-root", str(self.data), "--proxy-loopback"]
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=open(self.logs / "startup.log", "ab"),
                             env=clean_env(BUILDPROXY_PLUGIN_CACHE=str(cache)),
                             start_new_session=True)
        self.procs.append(p)
        p.stdout.readline()
        t1 = time.perf_counter()
        self.stop(p)
        return {"ms": (t1 - t0) * 1000}

    def w3(self):
        systems = ["direct", "buildproxy cold", "buildproxy warm"]
        if not self.args.no_mitm:
            systems.append("mitm")
        for s in systems:  # page cache for every binary
            self.startup(s)
        runs = self.rounds("W3", systems, self.startup)
        exports, exports_all = [], []
        for _ in range(self.args.runs):
            exports.append(self.exports_time(self.warm_cache, self.content_one))
            exports_all.append(self.exports_time(self.warm_cache, self.content))
        return {"runs": runs, "exports_warm": exports, "exports_warm_all_entries": exports_all}

    def capture_once(self, store=True, binary=None):
        """The big file through `buildproxy capture --store` (COMMAND is a
        shell that runs curl via the exported proxy, then reads the proxy's
        VmHWM, since the proxy exits with it); without `--store` when
        `store` is false (hashing only)."""
        d = Path(tempfile.mkdtemp(dir=self.scratch, prefix="capture-"))
        result = d / "result"
        script = (
            f'curl -sS --http1.1 --cacert "{self.ca_cert}" --proxy "$https_proxy" '
            f'-o /dev/null -w "{CURL_FMT}" "{self.base}/big.bin" > "{result}" && '
            f'grep -E "^VmHWM" /proc/$PPID/status >> "{result}" && '
            f'cut -d" " -f14,15 /proc/$PPID/stat >> "{result}"'
        )
        cmd = [str(binary or self.bin), "capture",
               *(["--store", str(d / "store")] if store else []),
               "--output", str(d / "proxy_content.nix"), "--upstream-ca", str(self.ca_cert),
               *self.bp_common(), "--", "sh", "-c", script]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=open(self.logs / "capture.log", "ab"), env=self.bp_env())
        wall = time.perf_counter() - t0
        lines = result.read_text().splitlines()
        code, size, total, _ = lines[0].split()
        if code != "200" or int(size) != self.big_size:
            raise RuntimeError(f"capture: HTTP {code}, {size} bytes")
        if store:
            blobs = list((d / "store" / "blobs" / "sha256").iterdir())
            if len(blobs) != 1 or blobs[0].stat().st_size != self.big_size:
                raise RuntimeError(f"capture: the store holds {blobs}")
        hwm = int(lines[1].split()[1])
        utime, stime = (int(x) for x in lines[2].split())
        shutil.rmtree(d)
        return {"mib_s": self.big_size / (1 << 20) / float(total), "seconds": float(total),
                "wall_s": wall, "vmhwm_kib": hwm,
                "cpu_s": (utime + stime) / os.sysconf("SC_CLK_TCK")}

    def nginx_cpu(self, nginx=None):
        """{pid: CPU seconds so far} of nginx's workers (the master only
        waits); a worker that exits meanwhile is left out."""
        pid = (nginx or self.nginx).pid
        kids = Path(f"/proc/{pid}/task/{pid}/children")
        out = {}
        for pid in kids.read_text().split():
            try:
                out[pid] = proc_status(int(pid))["cpu_s"]
            except FileNotFoundError:
                pass
        return out

    def direct_cpu(self):
        """The big file direct, with the CPU of its two TLS endpoints:
        nginx's workers and curl (the only child run meanwhile). A proxy
        that captures does both endpoints' TLS and socket work, and hashes:
        their sum, in the same round, is what its CPU compares with (the
        capture's CPU includes its start, about 10 ms of a 1 GiB run's
        seconds)."""
        n0 = self.nginx_cpu()
        c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = self.big(None)
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        # per worker: one that started meanwhile counts from zero
        out["nginx_cpu_s"] = sum(c - n0.get(pid, 0.0) for pid, c in self.nginx_cpu().items())
        out["curl_cpu_s"] = (c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime)
        out["cpu_s"] = out["nginx_cpu_s"] + out["curl_cpu_s"]
        return out

    def relay_cpu(self):
        """The big file through the relay (`start_relay`): the relay's
        workers' CPU, the part a capturing proxy does too."""
        r0 = self.nginx_cpu(self.relay)
        size, total = self.download(f"https://127.0.0.1:{self.relay_port}/big.bin", None)
        if size != self.big_size:
            raise RuntimeError(f"big.bin via the relay: {size} bytes")
        cpu = sum(c - r0.get(pid, 0.0) for pid, c in self.nginx_cpu(self.relay).items())
        return {"mib_s": size / (1 << 20) / total, "seconds": total, "cpu_s": cpu}

    def w4(self):
        befores = {f"buildproxy {name}": b for name, b in self.before.items()}
        self.start_relay()

        def measure(s):
            if s == "direct":
                return self.direct_cpu()
            if s == RELAY:
                return self.relay_cpu()
            if s in befores:
                return self.capture_once(binary=befores[s])
            return self.capture_once(store=s == "buildproxy")
        systems = ["direct", RELAY, "buildproxy", "buildproxy, no --store", *befores]
        out = {"runs": self.rounds("W4", systems, measure)}
        self.stop(self.relay)
        return out

    def w5(self):
        bundled, bundled_url = self.start_buildproxy(
            ["proxy", "--upstream-ca", str(self.ca_cert)], "buildproxy-proxy")
        bare, bare_url = self.start_buildproxy(
            ["proxy", "--upstream-ca", str(self.ca_cert), "--no-default-plugins"],
            "buildproxy-proxy-bare")
        proxies = {"direct": None, "bundled chain": bundled_url, "no plugins": bare_url}
        procs = {"bundled chain": bundled, "no plugins": bare}
        for name, binary in self.before.items():
            procs[f"bundled chain, {name}"], proxies[f"bundled chain, {name}"] = \
                self.start_buildproxy(["proxy", "--upstream-ca", str(self.ca_cert)],
                                      f"buildproxy-proxy-{name}", binary)
        systems = list(proxies)
        for s in systems:
            self.many(proxies[s], 1)
        out = {}
        for kind, conns in (("seq", 1), ("par", PAR_CONNECTIONS)):
            out[kind] = {"runs": self.rounds(f"W5 {kind}", systems,
                                             lambda s: self.many(proxies[s], conns))}
        out["proxy"] = self.stop_systems(procs)
        return out

    # ------------------------------------------------- W6: content size

    def sized_content(self, n):
        """A content JSON of `n` entries: every small file under its W2 URL,
        then entries that are never requested (each naming a small file,
        as a real capture's entries name distinct store paths), and the
        prepared file `buildproxy prepare` makes of it."""
        json_path = self.work / f"content-{n}.json"
        prepared = self.work / f"content-{n}.prepared"
        # Written every run: the URLs hold this run's nginx port.
        count = self.args.small_count
        # Replay serves only bytes that match the entry's hash.
        hashes = [sri_of(self.data / "small" / f"{i:05d}.bin") for i in range(count)]
        entries = [{"url": self.small_url(i) if i < count else
                    f"https://repo.example.org/maven2/org/example/lib{i}/1.0/lib{i}-1.0.jar",
                    "status_code": 200,
                    "headers": {"content-type": "application/octet-stream",
                                "etag": f'"{i:08x}"'},
                    "hash": hashes[i % count],
                    "file": str(self.data / "small" / f"{i % count:05d}.bin")}
                   for i in range(n)]
        json_path.write_text(json.dumps(entries))
        subprocess.run([str(self.bin), "prepare", str(json_path), "--output", str(prepared),
                        "--allow-root", str(self.data)], check=True, capture_output=True)
        return json_path, prepared

    def replay_start(self, content, binary=None):
        """exec -> listening of `replay --content content` (a fresh CA, as a
        build's replay has), and its peak RSS then."""
        port = free_port()
        cmd = [str(binary or self.bin), "replay", "--content", str(content), "--allow-root",
               str(self.data), "--proxy-loopback", "--listen", f"127.0.0.1:{port}"]
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=open(self.logs / "w6.log", "ab"), env=self.bp_env(),
                             start_new_session=True)
        self.procs.append(p)
        t1 = wait_connect(port, p, 120)
        rss = proc_status(p.pid)["vmhwm_kib"]
        self.stop(p)
        return {"ms": (t1 - t0) * 1000, "vmhwm_kib": rss}

    def prepare_with(self, binary, content_json, out):
        """`buildproxy prepare` by `binary` (each build reads its own format)."""
        subprocess.run([str(binary), "prepare", str(content_json), "--output", str(out),
                        "--allow-root", str(self.data)], check=True, capture_output=True)
        return out

    def w6(self):
        builds = {None: self.bin, **self.before}
        ones = {}
        for name, b in list(builds.items()):
            try:
                ones[name] = self.prepare_with(
                    b, self.content_one,
                    self.work / f"content-one{'.' + name if name else ''}.prepared")
            except subprocess.CalledProcessError:
                if name is None:
                    raise
                log(f"W6: {name} has no `buildproxy prepare`; left out")
                del builds[name]
        out = {}
        for n in W6_SIZES:
            json_path, prepared = self.sized_content(n)
            # (content, binary) per system
            contents = {"1 entry (floor)": (ones[None], None),
                        f"prepared {n}": (prepared, None), f"JSON {n}": (json_path, None)}
            for name, b in builds.items():
                if name is None:
                    continue
                contents[f"1 entry, {name}"] = (ones[name], b)
                contents[f"prepared {n}, {name}"] = (
                    self.prepare_with(b, json_path, self.work / f"content-{n}.{name}.prepared"),
                    b)
            for c, b in contents.values():  # page cache
                self.replay_start(c, b)
            start = self.rounds(f"W6 start {n}", list(contents),
                                lambda s: self.replay_start(*contents[s]))
            procs, proxies = {}, {"direct": None}
            for name, b in builds.items():
                system = f"buildproxy {name}" if name else "buildproxy"
                procs[system], proxies[system] = self.start_buildproxy(
                    ["replay", "--content", str(contents[f"prepared {n}" + (
                        f", {name}" if name else "")][0]), "--allow-root", str(self.data)],
                    f"buildproxy-replay-{n}{'-' + name if name else ''}", b)
            # The same entries loaded from the JSON (an in-memory index):
            # what a prepared lookup's cost is measured against.
            procs["buildproxy, JSON"], proxies["buildproxy, JSON"] = self.start_buildproxy(
                ["replay", "--content", str(json_path), "--allow-root", str(self.data)],
                f"buildproxy-replay-{n}-json")
            count = min(n, self.args.small_count)
            for s in proxies:
                self.many(proxies[s], 1, count)
            # CPU from here on: loading the JSON is not a lookup's
            warm = {s: proc_status(p.pid)["cpu_s"] for s, p in procs.items()}
            lookup = self.rounds(f"W6 lookup {n}", list(proxies),
                                 lambda s: self.many(proxies[s], 1, count))
            proxy = self.stop_systems(procs)
            for s, st in proxy.items():
                st["cpu_s"] -= warm[s]
            out[str(n)] = {"start": start, "lookup": lookup, "proxy": proxy}
        return out

    # ------------------------------------------- W9: a plugin that loops

    def w9(self):
        """W2 through a replay whose chain starts with the `misbehave`
        fixture configured to compute forever on URLs containing `/boom`
        (every other request it passes on to `replay`, a copy of the bundled
        one), measured while nobody asks for `/boom` (quiet) and while
        another client asks for it over and over, each request running the
        plugin to its deadline (1 s) before a 502."""
        if not self.fixtures or not (self.fixtures / "misbehave.wasm").exists():
            raise RuntimeError("W9 needs the misbehave and replay components: --fixtures DIR "
                               "(run.sh passes the release build's OUT_DIR)")
        builds = {None: self.bin, **self.before}
        procs, urls = {}, {}
        for name, b in list(builds.items()):
            try:
                procs[name], urls[name] = self.start_replay(
                    b, f"buildproxy-replay-misbehave{'-' + name if name else ''}",
                    ["--no-default-plugins",
                     "--plugin", f"{self.fixtures / 'misbehave.wasm'}=loop",
                     "--plugin", str(self.fixtures / "replay.wasm")])
            except RuntimeError as e:
                if name is None:
                    raise
                # a build older than the fixtures' interface
                log(f"W9: {name} does not load the fixtures; left out ({e})")
                del builds[name]
        boom = f"{self.base}/small/boom"
        looping = {"stop": False}
        # each build's /boom answers and their times
        booms = {name: {"codes": [], "seconds": []} for name in builds}

        def loop(name):
            while not looping["stop"]:
                t0 = time.perf_counter()
                out = subprocess.run(self.curl(urls[name]) + ["-o", "/dev/null", "-w",
                                                              "%{http_code}", boom],
                                     capture_output=True, text=True, env=clean_env())
                booms[name]["codes"].append(out.stdout.strip())
                booms[name]["seconds"].append(time.perf_counter() - t0)

        import threading

        # system -> (build, whether a plugin loops); "direct" has no build
        systems = {}
        for name in builds:
            suffix = f", {name}" if name else ""
            systems["quiet" + suffix] = (name, False)
            systems["while a plugin loops" + suffix] = (name, True)
        systems["direct"] = (None, None)

        def measure(system, conns):
            name, loops = systems[system]
            if loops is None:
                return self.many(None, conns)
            if not loops:
                return self.many(urls[name], conns)
            looping["stop"] = False
            t = threading.Thread(target=loop, args=(name,))
            t.start()
            time.sleep(0.3)  # the first /boom request is in the plugin
            try:
                return self.many(urls[name], conns)
            finally:
                looping["stop"] = True
                t.join()

        for s in systems:
            measure(s, 1)
        out = {}
        for kind, conns in (("seq", 1), ("par", PAR_CONNECTIONS)):
            out[kind] = {"runs": self.rounds(f"W9 {kind}", list(systems),
                                             lambda s: measure(s, conns))}
        out["proxy"] = {"while a plugin loops" + (f", {name}" if name else ""):
                        proc_status(procs[name].pid) for name in builds}
        for p in procs.values():
            self.stop(p)
        for name, b in booms.items():
            codes = b["codes"]
            summary = {"requests": len(codes), "502": codes.count("502"),
                       "median_s": statistics.median(b["seconds"]) if codes else None}
            if name is None:
                out["boom"] = summary
            else:
                out.setdefault("boom_before", {})[name] = summary
            log(f"W9{' ' + name if name else ''}: {len(codes)} /boom requests, "
                f"{codes.count('502')} answered 502, median {summary['median_s'] or 0:.2f} s")
            if not codes or codes.count("502") != len(codes):
                raise RuntimeError(f"W9: the looping plugin's requests got {set(codes)}, "
                                   "not 502")
        return out

    # ------------------------------------------------ W7: Nix evaluation

    def nix_content(self, n):
        """A proxy_content.nix of `n` entries as capture writes them."""
        path = self.work / f"proxy_content-{n}.nix"
        if path.exists():
            return path
        parts = ["{ fetchurl }:\n[\n"]
        for i in range(n):
            url = f"https://repo.example.org/maven2/org/example/lib{i}/1.0/lib{i}-1.0.jar"
            parts.append(
                f'  {{\n    url = "{url}";\n    method = "GET";\n    status_code = 200;\n'
                f'    headers = {{\n      "content-type" = "application/java-archive";\n'
                f'      "etag" = "\\"{i:08x}\\"";\n    }};\n'
                f'    file = fetchurl {{\n      url = "{url}";\n'
                f'      hash = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";\n'
                f'    }};\n  }}\n')
        parts.append("]\n")
        path.write_text("".join(parts))
        return path

    def nix_eval(self, system, content):
        """CPU seconds (user+sys) and wall of one `nix-instantiate`, in a
        store of the benchmark's own (warmed: every .drv already written)."""
        stand_ins = self.tests.parent / "nix" / "stand-ins.nix"
        library = self.tests.parent.parent / "nix"
        if system == "fetchurls (floor)":
            expr = (f"map (e: e.file) (import {content} "
                    f"{{ inherit (import {stand_ins} {{ }}) fetchurl; }})")
        else:
            expr = f"(import {library} (import {stand_ins} {{ }})).mkBuildproxy {content}"
        env = clean_env(NIX_REMOTE=f"local?root={self.work / 'nix-root'}")
        cmd = ["nix-instantiate", "--option", "build-users-group", "", "-E", expr]
        before = os.times()
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL,
                       stderr=open(self.logs / "w7.log", "ab"), env=env)
        wall = time.perf_counter() - t0
        after = os.times()
        cpu = (after.children_user - before.children_user
               + after.children_system - before.children_system)
        return {"cpu_s": cpu, "seconds": wall}

    def w7(self):
        if not shutil.which("nix-instantiate"):
            raise RuntimeError("W7 needs nix-instantiate (Debian's nix-bin)")
        systems = ["fetchurls (floor)", "mkBuildproxy"]
        out = {}
        for n in W7_SIZES:
            content = self.nix_content(n)
            for s in systems:  # writes the .drv files once
                self.nix_eval(s, content)
            out[str(n)] = {"runs": self.rounds(f"W7 {n}", systems,
                                               lambda s: self.nix_eval(s, content))}
        return out

    # ------------------------------------------------------ W8: git clone

    def make_git_repo(self):
        """A bare repository of W8_FILES text files (source-like lines,
        0.5-8 KiB) over W8_COMMITS commits, each after the first editing
        W8_EDITS files; written with `git fast-import` from a fixed seed
        and fixed dates (the same commit IDs every run), then repacked
        the way a hosting server keeps it (deltas, bitmap)."""
        root = self.work / "git"
        bare = root / "repo.git"
        marker = root / "params"
        params = f"{W8_FILES} {W8_COMMITS} {W8_EDITS} 2\n"
        if bare.exists() and marker.exists() and marker.read_text() == params:
            return bare
        log(f"writing a git repository of {W8_FILES} files, {W8_COMMITS} commits")
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        rng = random.Random(8)
        words = ["fn", "let", "mut", "self", "return", "if", "else", "match", "impl", "pub",
                 "struct", "use", "for", "in", "while", "Some", "None", "Ok", "Err", "=",
                 "==", "+", "->", "=>", "{", "}", "(", ")", ";", "&", "value", "buffer",
                 "request", "response", "entry", "index", "count", "error", "config",
                 "state", "path", "name", "body", "header", "len", "push", "get", "insert"]
        words += [f"ident{i}" for i in range(200)]

        def line():
            return "    " * rng.randint(0, 3) + " ".join(
                rng.choice(words) for _ in range(rng.randint(2, 12)))

        def text(size):
            out, n = [], 0
            while n < size:
                out.append(line())
                n += len(out[-1]) + 1
            return out

        paths = [f"src/m{d:02d}/file{f:03d}.rs" for d in range(W8_FILES // 50)
                 for f in range(50)][:W8_FILES]
        files = {p: text(rng.randint(512, 8192)) for p in paths}
        stream = bytearray()

        def data(b):
            stream.extend(f"data {len(b)}\n".encode())
            stream.extend(b)
            stream.extend(b"\n")

        for c in range(W8_COMMITS):
            changed = paths if c == 0 else rng.sample(paths, W8_EDITS)
            if c:
                for p in changed:
                    lines = files[p]
                    for _ in range(rng.randint(1, 8)):
                        at = rng.randrange(len(lines))
                        if rng.random() < 0.5:
                            lines[at] = line()
                        else:
                            lines.insert(at, line())
            when = 1700000000 + c * 3600
            stream.extend(f"commit refs/heads/main\nmark :{c + 1}\n"
                          f"author Bench <bench@example.org> {when} +0000\n"
                          f"committer Bench <bench@example.org> {when} +0000\n".encode())
            data(f"commit {c}\n".encode())
            if c:
                stream.extend(f"from :{c}\n".encode())
            for p in changed:
                stream.extend(f"M 100644 inline {p}\n".encode())
                data(("\n".join(files[p]) + "\n").encode())
        env = self.git_env()
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True,
                       env=env)
        subprocess.run(["git", "fast-import", "--quiet"], input=bytes(stream), cwd=bare,
                       check=True, env=env)
        subprocess.run(["git", "repack", "-adfq", "--write-bitmap-index"], cwd=bare,
                       check=True, env=env)
        marker.write_text(params)
        return bare

    def git_env(self, **extra):
        """git with no system or user configuration and no prompts."""
        home = self.work / "git-home"
        home.mkdir(exist_ok=True)
        return clean_env(GIT_CONFIG_NOSYSTEM="1", HOME=str(home), GIT_TERMINAL_PROMPT="0",
                         **extra)

    def start_git_server(self, bare):
        """`git http-backend` as CGI through fcgiwrap, behind nginx over
        HTTPS with the bench's certificate: `https://127.0.0.1:PORT/repo.git`.
        nginx logs every request, so replay can be checked never to reach it."""
        fcgiwrap = shutil.which("fcgiwrap") or shutil.which("fcgiwrap", path="/usr/sbin")
        if not fcgiwrap:
            raise RuntimeError("W8 needs fcgiwrap (Debian's fcgiwrap)")
        d = self.work / "git-server"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
        sock = d / "fcgiwrap.sock"
        # Two workers: git-http-backend is a process per request anyway.
        fcgi = self.spawn([fcgiwrap, "-c", "2", "-s", f"unix:{sock}"], "fcgiwrap")
        self.groups.add(fcgi.pid)
        end = time.monotonic() + 10
        while not sock.exists():
            if time.monotonic() > end:
                raise RuntimeError("fcgiwrap did not make its socket")
            time.sleep(0.01)
        backend = Path(subprocess.run(["git", "--exec-path"], check=True, capture_output=True,
                                      text=True).stdout.strip()) / "git-http-backend"
        port = free_port()
        self.git_access_log = d / "access.log"
        self.write_nginx_conf(d, port, http=f"  access_log {self.git_access_log};\n", server=f"""\
    client_max_body_size 0;
    location / {{
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME {backend};
      fastcgi_param PATH_INFO $uri;
      fastcgi_param GIT_PROJECT_ROOT {bare.parent};
      fastcgi_param GIT_HTTP_EXPORT_ALL 1;
      fastcgi_param GIT_CONFIG_NOSYSTEM 1;
      fastcgi_param HOME {d};
      fastcgi_buffering off;
      fastcgi_pass unix:{sock};
    }}
""")
        p = self.run_nginx(d, port, "git-nginx")
        self.git_server = [p, fcgi]
        url = f"https://127.0.0.1:{port}/{bare.name}"
        # The smart protocol, version 2, or the numbers mean nothing.
        out = subprocess.run(["git", "ls-remote", url, "refs/heads/main"], check=True,
                             capture_output=True, text=True,
                             env=self.git_env(GIT_SSL_CAINFO=str(self.ca_cert),
                                              GIT_TRACE_PACKET="1"))
        if "< version 2" not in out.stderr:
            raise RuntimeError(f"{url} does not speak protocol v2: {out.stderr[-2000:]}")
        log(f"git http-backend on {url}")
        return url, out.stdout.split()[0]

    def git_requests(self):
        return len(self.git_access_log.read_text().splitlines())

    def clone_script(self, kinds, result):
        """sh that clones each of `kinds` into ./<n>, timing each clone
        with `date` (the same way for every system), then writes the
        parent's (the proxy's, under buildproxy) peak RSS and CPU ticks."""
        parts = ["set -e"]
        for n, kind in enumerate(kinds):
            opts = " ".join(W8_CLONES[kind])
            parts.append(f't0=$(date +%s%N); git clone -q {opts} "{self.git_url}" {n}; '
                         f't1=$(date +%s%N); echo $((t1 - t0)) >> "{result}"')
        parts.append(f'grep -E "^VmHWM" /proc/$PPID/status >> "{result}"')
        parts.append(f'cut -d" " -f14,15 /proc/$PPID/stat >> "{result}"')
        return "; ".join(parts)

    def git_clone(self, system, kind):
        """One clone of `kind` by `system` in a fresh directory: the clone's
        wall time (ms), the whole command's (for buildproxy: start, clone,
        exit), and the proxy's CPU and peak RSS. Checks what was checked
        out: the server's HEAD and every file."""
        d = Path(tempfile.mkdtemp(dir=self.scratch, prefix="clone-"))
        result = d / "result"
        script = self.clone_script([kind], result)
        if system == "direct":
            cmd = ["sh", "-c", script]
            env = self.git_env(GIT_SSL_CAINFO=str(self.ca_cert))
        elif system == "buildproxy capture":
            cmd = [str(self.bin), "capture", "--store", str(d / "store"),
                   "--output", str(d / "proxy_content.nix"), "--upstream-ca", str(self.ca_cert),
                   *self.bp_common(), "--", "sh", "-c", script]
            env = self.git_env(BUILDPROXY_PLUGIN_CACHE=str(self.warm_cache))
        else:
            cmd = [str(self.bin), "replay", "--strict", "--store", str(self.git_store),
                   *self.bp_common(), "--", "sh", "-c", script]
            env = self.git_env(BUILDPROXY_PLUGIN_CACHE=str(self.warm_cache))
        before = self.git_requests()
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=d, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=open(self.logs / "w8.log", "ab"),
                       env=env)
        wall = time.perf_counter() - t0
        if system == "buildproxy replay" and self.git_requests() != before:
            raise RuntimeError("replay reached the git server")
        lines = result.read_text().splitlines()
        out = {"ms": int(lines[0]) / 1e6, "wall_ms": wall * 1000}
        if system != "direct":
            utime, stime = (int(x) for x in lines[2].split())
            out["vmhwm_kib"] = int(lines[1].split()[1])
            out["cpu_s"] = (utime + stime) / os.sysconf("SC_CLK_TCK")
        clone = d / "0"
        env = self.git_env()
        head = subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], check=True,
                              capture_output=True, text=True, env=env).stdout.strip()
        files = subprocess.run(["git", "-C", str(clone), "ls-files"], check=True,
                               capture_output=True, text=True, env=env).stdout.count("\n")
        if head != self.git_head or files != W8_FILES:
            raise RuntimeError(f"{system} {kind}: HEAD {head}, {files} files")
        shutil.rmtree(d)
        return out

    def w8(self):
        bare = self.make_git_repo()
        self.git_url, self.git_head = self.start_git_server(bare)
        # The store replay serves: one capture of both clones.
        d = self.work / "git-capture"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
        self.git_store = d / "store"
        script = self.clone_script(list(W8_CLONES), d / "result")
        subprocess.run([str(self.bin), "capture", "--store", str(self.git_store),
                        "--output", str(d / "proxy_content.nix"),
                        "--upstream-ca", str(self.ca_cert), *self.bp_common(),
                        "--", "sh", "-c", script], check=True, cwd=d,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=open(self.logs / "w8.log", "ab"),
                       env=self.git_env(BUILDPROXY_PLUGIN_CACHE=str(self.warm_cache)))
        store_bytes = sum(f.stat().st_size for f in self.git_store.rglob("*") if f.is_file())
        counted = subprocess.run(["git", "count-objects", "-v"], cwd=bare, check=True,
                              capture_output=True, text=True, env=self.git_env()).stdout
        out = {"repository": {"files": W8_FILES, "commits": W8_COMMITS,
                              "edits_per_commit": W8_EDITS, "head": self.git_head,
                              "count_objects": dict(l.split(": ") for l in counted.splitlines())},
               "store_bytes": store_bytes}
        systems = ["direct", "buildproxy capture", "buildproxy replay"]
        for kind in W8_CLONES:
            for s in systems:  # page cache, leaf certificates
                self.git_clone(s, kind)
            out[kind] = {"runs": self.rounds(f"W8 {kind}", systems,
                                             lambda s: self.git_clone(s, kind))}
            for s in systems[1:]:
                r = [a["ms"] / b["ms"] for a, b in zip(out[kind]["runs"][s],
                                                      out[kind]["runs"]["direct"])]
                log(f"W8 {kind} {s} / direct per round: " + " ".join(f"{x:.2f}" for x in r))
        for p in self.git_server:
            self.stop(p)
        return out


# ------------------------------------------------------------------ report


def fmt_run(r):
    for k, unit in (("mib_s", "MiB/s"), ("req_s", "req/s"), ("ms", "ms"), ("cpu_s", "CPU-s")):
        if k in r:
            return f"{r[k]:.1f} {unit}" if k != "req_s" else f"{r[k]:.0f} {unit}"
    return str(r)


def median_of(runs, key):
    return statistics.median(r[key] for r in runs)


def paired_ratio(runs, system, key, base="direct"):
    return statistics.median(a[key] / b[key] for a, b in zip(runs[system], runs[base]))


def mib(kib):
    return f"{kib / 1024:.1f} MiB" if kib is not None else "-"


def summarise(results):
    """Rows of (workload, system, median, ratio to direct, peak RSS, target)."""
    rows = []
    p = results["params"]
    gib = p["big_bytes"] / (1 << 30)
    # every W2/W5 system served a warm-up pass, then seq and par each round
    requests = p["small_count"] * (1 + 2 * p["runs"])

    def add(work, runs, key, unit, rss=None, target="", cpu_per=None):
        for system in runs:
            med = median_of(runs[system], key)
            ratio = None if system == "direct" else paired_ratio(runs, system, key)
            r = (rss or {}).get(system, {})
            cpu = None
            if r.get("cpu_s") is not None and cpu_per:
                cpu = cpu_per(r["cpu_s"])
            rows.append({"workload": work, "system": system, "median": med, "unit": unit,
                         "ratio": ratio, "vmhwm_kib": r.get("vmhwm_kib"), "cpu": cpu,
                         "target": target if system in ("buildproxy", "buildproxy warm") else ""})

    def plain(work, system, unit, median=None, ratio=None):
        """A row with no RSS, CPU or target: a figure, or a ratio between
        two systems."""
        rows.append({"workload": work, "system": system, "median": median, "unit": unit,
                     "ratio": ratio, "vmhwm_kib": None, "cpu": None, "target": ""})

    per_gib = lambda cpu: f"{cpu / p['runs'] / gib:.2f} s/GiB"  # noqa: E731
    per_req = lambda cpu: f"{cpu / requests * 1e6:.0f} µs/req"  # noqa: E731
    w = results["workloads"]
    if "W1" in w:
        add("W1 1 GiB replay", w["W1"]["runs"], "mib_s", "MiB/s", w["W1"]["proxy"], TARGETS["W1"],
            per_gib)
    if "W2" in w:
        add("W2 seq 2k×4 KiB", w["W2"]["seq"]["runs"], "req_s", "req/s", w["W2"]["proxy"],
            TARGETS["W2 seq"], per_req)
        add("W2 par (8 conns)", w["W2"]["par"]["runs"], "req_s", "req/s", w["W2"]["proxy"],
            TARGETS["W2 par"], per_req)
    if "W3" in w:
        add("W3 start→listening", w["W3"]["runs"], "ms", "ms", None, TARGETS["W3 warm"])
        for key, label in (("exports_warm", "buildproxy warm"),
                           ("exports_warm_all_entries", f"warm, {p['small_count'] + 1} entries")):
            rows.append({"workload": "W3 start→exports", "system": label,
                         "median": median_of(w["W3"][key], "ms"), "unit": "ms", "ratio": None,
                         "vmhwm_kib": None, "cpu": None,
                         "target": TARGETS["W3 warm"] if key == "exports_warm" else ""})
    if "W4" in w:
        runs = w["W4"]["runs"]
        rss = {s: {"vmhwm_kib": max(r["vmhwm_kib"] for r in runs[s]),
                   "cpu_s": statistics.median(r["cpu_s"] for r in runs[s]) * p["runs"]}
               for s in runs if s not in ("direct", RELAY)}
        add("W4 1 GiB capture", runs, "mib_s", "MiB/s", rss,
            f"{TARGETS['W4']}; {TARGETS['W4 cpu']}", per_gib)
        if runs["direct"] and "cpu_s" in runs["direct"][0]:
            # Direct: nginx's and curl's CPU, each and summed; each capture's
            # CPU against that sum in the same round.
            for key, label in (("nginx_cpu_s", "direct: nginx's workers"),
                               ("curl_cpu_s", "direct: curl"),
                               ("cpu_s", "direct: nginx + curl")):
                plain("W4 1 GiB, CPU-s/GiB", label, "CPU-s",
                      median=median_of(runs["direct"], key) / gib)
            for system in runs:
                if system not in ("direct", RELAY):
                    plain("W4 1 GiB, CPU-s/GiB", f"{system} ÷ (nginx + curl)", "CPU-s",
                          median=median_of(runs[system], "cpu_s") / gib,
                          ratio=paired_ratio(runs, system, "cpu_s"))
        if runs.get(RELAY):
            # What a proxy that only relays the bytes pays: TLS in and out.
            plain("W4 1 GiB, CPU-s/GiB", RELAY, "CPU-s",
                  median=median_of(runs[RELAY], "cpu_s") / gib)
            for system in runs:
                if system.startswith("buildproxy"):
                    plain("W4 1 GiB, CPU-s/GiB", f"{system} ÷ the relay", "CPU-s",
                          ratio=paired_ratio(runs, system, "cpu_s", RELAY))
    if "W5" in w:
        for kind in ("seq", "par"):
            add(f"W5 {kind} proxy mode", w["W5"][kind]["runs"], "req_s", "req/s",
                w["W5"]["proxy"], "", per_req)
    def against_floor(work, runs, key, unit, rss_key, target, measured):
        """Rows of systems measured against the first one (the floor);
        `target` goes on the system `measured`."""
        floor = next(iter(runs))
        for system in runs:
            rows.append({"workload": work, "system": system, "unit": unit,
                         "median": median_of(runs[system], key),
                         "ratio": None if system == floor
                         else paired_ratio(runs, system, key, floor),
                         "vmhwm_kib": max((x.get(rss_key) or 0 for x in runs[system]),
                                          default=None) if rss_key else None,
                         "cpu": None, "target": target if system == measured else ""})

    if "W6" in w:
        for n, r in w["W6"].items():
            against_floor(f"W6 start {n} entries", r["start"], "ms", "ms", "vmhwm_kib",
                          TARGETS.get(f"W6 start {n}", ""), f"prepared {n}")
            # CPU counted from after the warm-up pass: one pass a round
            served = min(int(n), p["small_count"]) * p["runs"]
            add(f"W6 lookup {n} entries", r["lookup"], "req_s", "req/s", r["proxy"],
                TARGETS.get(f"W6 lookup {n}", ""),
                lambda cpu, served=served: f"{cpu / served * 1e6:.0f} µs/req")
            if "buildproxy, JSON" in r["lookup"]:
                plain(f"W6 lookup {n} entries", "prepared ÷ the same entries as JSON", "req/s",
                      ratio=paired_ratio(r["lookup"], "buildproxy", "req_s", "buildproxy, JSON"))
    if "W9" in w:
        for kind in ("seq", "par"):
            runs = w["W9"][kind]["runs"]
            against_floor(f"W9 {kind}, a plugin loops on another URL",
                          {s: runs[s] for s in ("quiet", "while a plugin loops", "direct")},
                          "req_s", "req/s", None, TARGETS["W9"], "while a plugin loops")
            # each --before build against its own quiet rate, and this
            # build's rate while a plugin loops against each one's
            for s in runs:
                if s.startswith("quiet, "):
                    name = s.split(", ", 1)[1]
                    loops = f"while a plugin loops, {name}"
                    against_floor(f"W9 {kind}, buildproxy {name}",
                                  {s: runs[s], loops: runs[loops]},
                                  "req_s", "req/s", None, "", None)
                    plain(f"W9 {kind}, while a plugin loops", f"buildproxy ÷ {name}", "req/s",
                          ratio=paired_ratio(runs, "while a plugin loops", "req_s", loops))
    # Builds measured in the same rounds (--before): this build's median
    # per-round ratio to each.
    def against_builds(work, runs, key, unit, this="buildproxy"):
        for other in runs:
            if other == this or not other.startswith(this + " "):
                continue
            if not runs[other] or key not in runs[other][0]:
                continue
            plain(work, f"{this} ÷ {other.split(' ', 1)[1]}", unit,
                  ratio=paired_ratio(runs, this, key, other))

    if "W1" in w:
        against_builds("W1 1 GiB replay", w["W1"]["runs"], "mib_s", "MiB/s")
    if "W2" in w:
        against_builds("W2 seq 2k×4 KiB", w["W2"]["seq"]["runs"], "req_s", "req/s")
        against_builds("W2 par (8 conns)", w["W2"]["par"]["runs"], "req_s", "req/s")
    if "W4" in w:
        against_builds("W4 1 GiB capture, CPU-s", w["W4"]["runs"], "cpu_s", "CPU-s")
    if "W6" in w:
        for n, r in w["W6"].items():
            against_builds(f"W6 lookup {n} entries", r["lookup"], "req_s", "req/s")
    if "W7" in w:
        for n, r in w["W7"].items():
            against_floor(f"W7 Nix eval {n} entries", r["runs"], "cpu_s", "CPU-s", None,
                          TARGETS.get(f"W7 {n}", ""), "mkBuildproxy")
    if "W8" in w:
        for kind in W8_CLONES:
            runs = w["W8"][kind]["runs"]
            for system in runs:
                ratios = None if system == "direct" else \
                    [a["ms"] / b["ms"] for a, b in zip(runs[system], runs["direct"])]
                cpu = None if system == "direct" else \
                    f"{median_of(runs[system], 'cpu_s'):.2f} s/clone"
                rows.append({"workload": f"W8 git clone, {kind}", "system": system,
                             "median": median_of(runs[system], "ms"), "unit": "ms",
                             "ratio": statistics.median(ratios) if ratios else None,
                             "ratio_range": (min(ratios), max(ratios)) if ratios else None,
                             "vmhwm_kib": None if system == "direct" else
                             max(r["vmhwm_kib"] for r in runs[system]),
                             "cpu": cpu,
                             "target": TARGETS["W8"] if system == "buildproxy replay" else ""})
            # The whole command: for buildproxy, exec -> the clone -> exit.
            whole = [a["wall_ms"] / b["wall_ms"]
                     for a, b in zip(runs["buildproxy replay"], runs["direct"])]
            rows.append({"workload": f"W8 git clone, {kind}", "system": "replay, exec→exit",
                         "median": median_of(runs["buildproxy replay"], "wall_ms"), "unit": "ms",
                         "ratio": statistics.median(whole),
                         "ratio_range": (min(whole), max(whole)), "vmhwm_kib": None,
                         "cpu": None, "target": ""})
    return rows


def print_table(rows):
    head = ["workload", "system", "median", "× direct (or floor)", "proxy peak RSS", "proxy CPU",
            "target"]
    lines = [head]
    for r in rows:
        med = "" if r["median"] is None else \
            f"{r['median']:.0f} {r['unit']}" if r["unit"] == "req/s" else \
            f"{r['median']:.2f} {r['unit']}" if r["unit"] == "CPU-s" else \
            f"{r['median']:.1f} {r['unit']}"
        lines.append([r["workload"], r["system"], med,
                      "" if r["ratio"] is None else f"{r['ratio']:.2f}×" + (
                          " ({:.2f}–{:.2f})".format(*r["ratio_range"])
                          if r.get("ratio_range") else ""),
                      mib(r["vmhwm_kib"]) if r["vmhwm_kib"] else "", r.get("cpu") or "",
                      r["target"]])
    widths = [max(len(l[i]) for l in lines) for i in range(len(head))]
    out = []
    for n, l in enumerate(lines):
        out.append("| " + " | ".join(c.ljust(widths[i]) for i, c in enumerate(l)) + " |")
        if n == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print("\n".join(out))


def version(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True)
        return (out.stdout or out.stderr).splitlines()[0].strip()
    except (OSError, IndexError):
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True, help="the buildproxy binary (release build)")
    ap.add_argument("--work", required=True, help="scratch directory (data, logs, nginx)")
    ap.add_argument("--results", required=True, help="directory for the JSON results")
    ap.add_argument("--mitmdump", default=shutil.which("mitmdump"))
    ap.add_argument("--runs", type=int, default=5, help="rounds per workload (≥ 3)")
    ap.add_argument("--size-mib", type=int, default=1024, help="size of the big file")
    ap.add_argument("--small-count", type=int, default=2000, help="number of 4 KiB files")
    ap.add_argument("--only", default="W1,W2,W3,W4,W5,W6,W7,W8,W9",
                    help="comma-separated workloads")
    ap.add_argument("--no-mitm", action="store_true", help="skip the mitmproxy incumbent")
    ap.add_argument("--build", default="", help="which build --bin is (run.sh says)")
    ap.add_argument("--note", default="", help="free text stored with the results")
    ap.add_argument("--before", action="append", metavar="NAME=BIN",
                    help="another buildproxy build measured beside --bin (W1, W2, W4, W5, W6, W9)")
    ap.add_argument("--fixtures", help="the directory holding misbehave.wasm and replay.wasm (W9)")
    args = ap.parse_args()
    if args.runs < 3:
        ap.error("--runs must be at least 3 (a median of fewer says little)")
    if not args.no_mitm and not args.mitmdump:
        ap.error("mitmdump not found: pass --mitmdump or --no-mitm")

    b = Bench(args)
    started = datetime.datetime.now(datetime.timezone.utc)
    results = {
        "date": started.isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "machine": {"cpus": os.cpu_count(), "kernel": os.uname().release,
                    "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                                     / (1 << 30), 1),
                    "loadavg_start": os.getloadavg()},
        "versions": {"buildproxy": args.build or str(b.bin),
                     "before": args.before,
                     "nginx": version(["nginx", "-v"]), "curl": version(["curl", "--version"]),
                     "git": version(["git", "--version"]),
                     "mitmproxy": version([args.mitmdump, "--version"]) if args.mitmdump else
                     None},
        "params": {"runs": args.runs, "big_bytes": b.big_size, "small_count": args.small_count,
                   "small_bytes": SMALL_SIZE, "par_connections": PAR_CONNECTIONS,
                   "client": "curl --http1.1, one process per connection"},
        "binary_bytes": b.bin.stat().st_size,
        "note": args.note,
        "workloads": {},
    }
    only = [w.strip().upper() for w in args.only.split(",")]
    try:
        b.make_pki()
        if HTTP_DATA.intersection(only):
            b.make_data()
            b.start_nginx()
            b.write_content()
            b.make_store()
        b.precompile()
        for w in only:
            log(f"--- {w}")
            try:
                results["workloads"][w] = getattr(b, w.lower())()
            except Exception as e:  # the other workloads' numbers are kept
                log(f"{w} failed: {e!r}")
                results.setdefault("failed", {})[w] = repr(e)
    finally:
        b.stop_all()
    results["machine"]["loadavg_end"] = os.getloadavg()
    results["summary"] = summarise(results)
    print()
    print(f"buildproxy benchmark, {results['date']} on {results['host']} "
          f"({results['machine']['cpus']} cores), medians of {args.runs} rounds; "
          f"ratios are medians of per-round ratios to direct")
    print()
    print_table(results["summary"])
    print()
    for w, why in results.get("failed", {}).items():
        print(f"{w} FAILED: {why}")
    print(f"binary: {b.bin} ({b.bin.stat().st_size / (1 << 20):.1f} MiB)")
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    # A run of some workloads does not overwrite the day's full run, nor a
    # second run of the day the first's numbers.
    part = "" if set(only) >= set(ap.get_default("only").split(",")) else \
        "-" + "-".join(w.lower() for w in only)
    path = out / f"{started.strftime('%Y-%m-%d')}-{results['host']}{part}.json"
    if path.exists():
        path = out / f"{started.strftime('%Y-%m-%d-%H%M%S')}-{results['host']}{part}.json"
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(f"raw numbers: {path}")


if __name__ == "__main__":
    main()
