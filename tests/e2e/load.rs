//! Load: many concurrent curl clients, HTTP/1.1 and h2, through capture and
//! then replay, over a mix of body sizes. Zero errors and every body's hash
//! right are asserted; throughput and peak RSS are printed, never asserted
//! (speed is not a test's business).
//!
//! Modest by default so CI runs it in seconds; `tests/load/run.sh` runs the
//! heavy version by setting:
//! - `BUILDPROXY_LOAD_CLIENTS` (default 50) concurrent clients, each one curl
//!   process fetching its URLs one after another on one connection;
//! - `BUILDPROXY_LOAD_REQUESTS` (default 20) requests per client;
//! - `BUILDPROXY_LOAD_MAX_MIB` (default 16) the largest body, in MiB. Sizes
//!   double from 1 KiB up to it; smaller ones are drawn more often, and each
//!   size is drawn at least once when there are enough clients.

use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::{Request, Response};
use sha2::{Digest, Sha256};

use crate::support::*;

const CHUNK: usize = 64 << 10;
const POOL: usize = 16;
/// Distinct URLs per size.
const VARIANTS: usize = 3;

/// Bodies made of a pool of random blocks, so the upstream serves gigabytes
/// without generating or holding them: chunk `c` of body `seed` is block
/// `(seed * 31 + c) % POOL`.
#[derive(Clone)]
struct Bodies {
    pool: Arc<Vec<Bytes>>,
}

impl Bodies {
    fn new() -> Self {
        Self {
            pool: Arc::new(
                (0..POOL)
                    .map(|i| Bytes::from(payload(CHUNK, i as u64 + 77)))
                    .collect(),
            ),
        }
    }

    fn chunk(&self, seed: u64, c: u64, left: u64) -> Bytes {
        let block = &self.pool[((seed * 31 + c) % POOL as u64) as usize];
        block.slice(..(left as usize).min(CHUNK))
    }

    fn sri(&self, size: u64, seed: u64) -> String {
        let mut h = Sha256::new();
        let (mut c, mut left) = (0, size);
        while left > 0 {
            let chunk = self.chunk(seed, c, left);
            h.update(&chunk);
            left -= chunk.len() as u64;
            c += 1;
        }
        use base64::Engine as _;
        format!(
            "sha256-{}",
            base64::engine::general_purpose::STANDARD.encode(h.finalize())
        )
    }
}

struct Generated {
    bodies: Bodies,
    seed: u64,
    chunk: u64,
    left: u64,
}

impl Body for Generated {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let data = self.bodies.chunk(self.seed, self.chunk, self.left);
        self.left -= data.len() as u64;
        self.chunk += 1;
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

/// Serves `/load/<size>/<seed>` over HTTP and HTTPS (h1 and h2).
struct LoadUpstream {
    http: SocketAddr,
    https: SocketAddr,
    bodies: Bodies,
    _rt: tokio::runtime::Runtime,
}

impl LoadUpstream {
    fn start(ca: &TestCa) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let bodies = Bodies::new();
        let b = bodies.clone();
        let handler = move |r| serve(r, b.clone());
        let http_addr = spawn_server(&rt, None, handler.clone());
        let https_addr = spawn_server(&rt, Some(ca.server.clone()), handler);
        Self {
            http: http_addr,
            https: https_addr,
            bodies,
            _rt: rt,
        }
    }
}

async fn serve(req: Request<Incoming>, bodies: Bodies) -> Result<Response<Generated>, Infallible> {
    let mut parts = req.uri().path().trim_start_matches("/load/").split('/');
    let size: u64 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let seed: u64 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut resp = Response::new(Generated {
        bodies,
        seed,
        chunk: 0,
        left: size,
    });
    resp.headers_mut()
        .insert("content-length", size.to_string().parse().unwrap());
    resp.headers_mut()
        .insert("content-type", "application/octet-stream".parse().unwrap());
    Ok(resp)
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One request: where, and what its body must be.
#[derive(Clone)]
struct Want {
    url: String,
    size: u64,
    sri: String,
}

/// Client `i`'s protocol and requests. Sizes double from 1 KiB to `max`
/// (plus an odd number of bytes, so nothing is block-aligned); a size is
/// drawn with weight 0.75^k, so small bodies dominate as in real builds,
/// and client i's first request takes size i (each size at least once).
struct Plan {
    clients: Vec<(&'static str, Vec<Want>)>,
    distinct: usize,
    bytes: u64,
}

fn plan(up: &LoadUpstream, clients: usize, requests: usize, max: u64) -> Plan {
    let mut sizes = Vec::new();
    let mut s = 1u64 << 10;
    while s <= max {
        sizes.push(s + 37 * sizes.len() as u64);
        s <<= 1;
    }
    let weights: Vec<f64> = (0..sizes.len()).map(|k| 0.75f64.powi(k as i32)).collect();
    let total: f64 = weights.iter().sum();
    let mut wants = std::collections::HashMap::new();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = Vec::new();
    let mut bytes = 0;
    for i in 0..clients {
        let (proto, scheme_addr) = match i % 3 {
            0 => ("--http2", ("https", up.https)),
            1 => ("--http1.1", ("https", up.https)),
            _ => ("--http1.1", ("http", up.http)),
        };
        let mut list = Vec::new();
        for j in 0..requests {
            let k = if j == 0 && i < sizes.len() {
                i
            } else {
                let mut r = (rand() % 1_000_000) as f64 / 1_000_000.0 * total;
                let mut k = 0;
                while k + 1 < sizes.len() && r >= weights[k] {
                    r -= weights[k];
                    k += 1;
                }
                k
            };
            let seed = (k * VARIANTS) as u64 + rand() % VARIANTS as u64;
            let size = sizes[k];
            let (scheme, addr) = scheme_addr;
            let url = format!("{scheme}://{addr}/load/{size}/{seed}");
            let sri = wants
                .entry(url.clone())
                .or_insert_with(|| up.bodies.sri(size, seed))
                .clone();
            bytes += size;
            list.push(Want { url, size, sri });
        }
        out.push((proto, list));
    }
    Plan {
        clients: out,
        distinct: wants.len(),
        bytes,
    }
}

/// Runs every client at once through the proxy in `env`; returns the
/// errors (none expected) and the wall time.
fn run_clients(env: &[(String, String)], plan: &Plan) -> (Vec<String>, Duration) {
    let start = Instant::now();
    let handles: Vec<_> = plan
        .clients
        .iter()
        .enumerate()
        .map(|(i, (proto, wants))| {
            let (env, proto, wants) = (env.to_vec(), *proto, wants.clone());
            std::thread::spawn(move || client(i, &env, proto, &wants))
        })
        .collect();
    let errors = handles
        .into_iter()
        .filter_map(|h| h.join().unwrap().err())
        .collect();
    (errors, start.elapsed())
}

/// One curl process fetching `wants` in order on one connection; the
/// bodies arrive back to back on its stdout and are hashed as they come.
fn client(i: usize, env: &[(String, String)], proto: &str, wants: &[Want]) -> Result<(), String> {
    let mut child = tool("curl")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .args(["-sS", "-f", "--max-time", "600", proto])
        .args(wants.iter().map(|w| w.url.as_str()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("client {i}: curl: {e}"))?;
    let mut out = child.stdout.take().unwrap();
    let mut buf = vec![0u8; 256 << 10];
    let mut result = Ok(());
    for (j, w) in wants.iter().enumerate() {
        let mut h = Sha256::new();
        let mut left = w.size as usize;
        while left > 0 {
            let n = match out.read(&mut buf[..left.min(256 << 10)]) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            h.update(&buf[..n]);
            left -= n;
        }
        use base64::Engine as _;
        let got = format!(
            "sha256-{}",
            base64::engine::general_purpose::STANDARD.encode(h.finalize())
        );
        if left > 0 || got != w.sri {
            result = Err(format!(
                "client {i} request {j} {}: {} bytes short, hash {got}, want {}",
                w.url, left, w.sri
            ));
            break;
        }
    }
    let mut rest = Vec::new();
    let _ = out.read_to_end(&mut rest);
    let outcome = child.wait_with_output().unwrap();
    result?;
    if !rest.is_empty() {
        return Err(format!(
            "client {i}: {} bytes more than asked for",
            rest.len()
        ));
    }
    if !outcome.status.success() {
        return Err(format!(
            "client {i}: curl {}: {}",
            outcome.status,
            String::from_utf8_lossy(&outcome.stderr)
        ));
    }
    Ok(())
}

fn vm_hwm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .map_or("unknown".into(), |l| {
            l.trim_start_matches("VmHWM:").trim().to_string()
        })
}

fn report(phase: &str, plan: &Plan, took: Duration, hwm: &str) {
    let mib = plan.bytes as f64 / (1u64 << 20) as f64;
    let requests: usize = plan.clients.iter().map(|(_, w)| w.len()).sum();
    eprintln!(
        "load: {phase}: {} clients, {requests} requests, {mib:.0} MiB in {:.1} s ({:.0} MiB/s), \
         buildproxy peak RSS (VmHWM) {hwm}",
        plan.clients.len(),
        took.as_secs_f64(),
        mib / took.as_secs_f64()
    );
}

#[test]
fn concurrent_clients_capture_and_replay_every_body_intact() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = LoadUpstream::start(&ca);
    let clients = env_or("BUILDPROXY_LOAD_CLIENTS", 50) as usize;
    let requests = env_or("BUILDPROXY_LOAD_REQUESTS", 20) as usize;
    let max = env_or("BUILDPROXY_LOAD_MAX_MIB", 16) << 20;
    let plan = plan(&up, clients, requests, max);
    let store = s.path("store");

    // Capture: the command waits for the clients, then reports its
    // parent's (buildproxy's) peak RSS.
    let script = format!(
        "while [ ! -e '{done}' ]; do sleep 0.1; done; grep VmHWM /proc/$PPID/status > '{hwm}'",
        done = s.path("done").display(),
        hwm = s.path("capture.hwm").display()
    );
    let mut capture = Running::start(&[
        "capture",
        "--print-env",
        "--proxy-loopback",
        "--upstream-ca",
        ca.pem_path.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--output",
        s.path("proxy_content.nix").to_str().unwrap(),
        "--",
        "sh",
        "-c",
        &script,
    ]);
    // One line per entry: drain it so buildproxy never blocks on stderr.
    let mut stderr = capture.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let (errors, took) = run_clients(&capture.env, &plan);
    std::fs::write(s.path("done"), b"").unwrap();
    let status = capture.child.wait().unwrap();
    let log = log.join().unwrap();
    assert!(
        errors.is_empty(),
        "capture: {} clients failed: {errors:#?}",
        errors.len()
    );
    assert!(status.success(), "{log}");
    let hwm = std::fs::read_to_string(s.path("capture.hwm")).unwrap_or_default();
    report(
        "capture",
        &plan,
        took,
        hwm.trim_start_matches("VmHWM:").trim(),
    );
    assert!(log.contains(" 0 errors,"), "{log}");
    let text = std::fs::read_to_string(s.path("proxy_content.nix")).unwrap();
    assert_eq!(
        text.matches("file = fetchurl").count(),
        plan.distinct,
        "{log}"
    );
    for (_, wants) in &plan.clients {
        for w in wants {
            assert!(text.contains(&format!("hash = \"{}\"", w.sri)), "{}", w.url);
        }
    }

    // Replay from the store the capture filled.
    let replay = Running::start(&[
        "replay",
        "--proxy-loopback",
        "--store",
        store.to_str().unwrap(),
    ]);
    let (errors, took) = run_clients(&replay.env, &plan);
    let hwm = vm_hwm(replay.child.id());
    let (code, log) = replay.stop();
    assert!(
        errors.is_empty(),
        "replay: {} clients failed: {errors:#?}",
        errors.len()
    );
    report("replay", &plan, took, &hwm);
    assert!(!log.contains("MISS"), "{log}");
    assert_eq!(code, 128 + libc::SIGTERM, "{log}");
}
