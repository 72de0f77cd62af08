//! Test fixtures: upstream servers on 127.0.0.1 (HTTP and HTTPS, HTTP/1.1
//! and h2) signed by a CA made at run time, and a running buildproxy.

#![allow(dead_code)]

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
use sha2::{Digest, Sha256};

pub const BIN: &str = env!("CARGO_BIN_EXE_buildproxy");

/// A compiled test plugin (built by build.rs like the bundled ones).
pub fn fixture_plugin(name: &str) -> PathBuf {
    PathBuf::from(env!("OUT_DIR")).join(format!("{name}.wasm"))
}

/// Deterministic pseudo-random bytes: a body that compresses badly and whose
/// corruption anywhere shows.
pub fn payload(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub fn sri(bytes: &[u8]) -> String {
    use base64::Engine as _;
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes))
    )
}

/// A temporary directory for one test, with the test CA written into it.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// The upstream's CA and a leaf for 127.0.0.1, ::1 and localhost.
pub struct TestCa {
    pub pem_path: PathBuf,
    pub server: Arc<rustls::ServerConfig>,
}

impl TestCa {
    pub fn new(dir: &Path) -> Self {
        Self::for_names(dir, &[])
    }

    /// A CA whose leaf also holds `names`: clients such as Go never send a
    /// loopback name through a proxy, so their tests give the upstream a
    /// name (an /etc/hosts entry in the test's own mount namespace).
    pub fn for_names(dir: &Path, names: &[&str]) -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::default();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "upstream test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let mut all = vec!["localhost".to_string()];
        all.extend(names.iter().map(|n| n.to_string()));
        let mut leaf = CertificateParams::new(all).unwrap();
        leaf.subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        leaf.subject_alt_names
            .push(SanType::IpAddress("::1".parse().unwrap()));
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
        let pem_path = dir.join("upstream-ca.pem");
        std::fs::write(&pem_path, ca_cert.pem()).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
        let mut server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf_cert.der().clone()], key)
        .unwrap();
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Self {
            pem_path,
            server: Arc::new(server),
        }
    }
}

/// An upstream that serves:
/// - `/bytes/<n>[?…]`: n deterministic bytes (seeded by the path+query)
/// - `/gzip`: a text body, gzip-encoded when the client accepts gzip
/// - `/status/<code>`: that status, a short body
/// - `/counter`: a different body every time
/// - `/redirect?to=<path>`: 302 to that path
///
/// It counts requests.
pub struct Upstream {
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub hits: Arc<AtomicU64>,
    _rt: Arc<tokio::runtime::Runtime>,
}

pub const GZIP_TEXT: &str = "buildproxy gzip test body. ";

impl Upstream {
    pub fn start(ca: &TestCa) -> Self {
        let rt = Arc::new(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap(),
        );
        let hits = Arc::new(AtomicU64::new(0));
        let h = hits.clone();
        let handler = move |r| serve(r, h.clone());
        let http_addr = spawn_server(&rt, None, handler.clone());
        let https_addr = spawn_server(&rt, Some(ca.server.clone()), handler);
        Self {
            http: http_addr,
            https: https_addr,
            hits,
            _rt: rt,
        }
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }
    pub fn https_url(&self, path: &str) -> String {
        format!("https://{}{path}", self.https)
    }
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn serve(
    req: Request<Incoming>,
    hits: Arc<AtomicU64>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    hits.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_string();
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::new()));
    if let Some(n) = path.strip_prefix("/bytes/") {
        let n: usize = n.parse().unwrap_or(0);
        let seed = pq
            .bytes()
            .fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(b as u64));
        *resp.body_mut() = Full::new(Bytes::from(payload(n, seed)));
        resp.headers_mut()
            .insert("content-type", "application/octet-stream".parse().unwrap());
        resp.headers_mut()
            .insert("etag", format!("\"{seed:x}\"").parse().unwrap());
    } else if path == "/gzip" {
        let text = GZIP_TEXT.repeat(200);
        let gzip = req
            .headers()
            .get("accept-encoding")
            .is_some_and(|v| v.to_str().unwrap_or("").contains("gzip"));
        if gzip {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(text.as_bytes()).unwrap();
            *resp.body_mut() = Full::new(Bytes::from(enc.finish().unwrap()));
            resp.headers_mut()
                .insert("content-encoding", "gzip".parse().unwrap());
        } else {
            *resp.body_mut() = Full::new(Bytes::from(text));
        }
        resp.headers_mut()
            .insert("content-type", "text/plain".parse().unwrap());
    } else if let Some(code) = path.strip_prefix("/status/") {
        *resp.status_mut() = hyper::StatusCode::from_u16(code.parse().unwrap_or(500)).unwrap();
        *resp.body_mut() = Full::new(Bytes::from(format!("status {code}\n")));
    } else if path == "/counter" {
        static N: AtomicU64 = AtomicU64::new(0);
        *resp.body_mut() = Full::new(Bytes::from(format!(
            "count {}\n",
            N.fetch_add(1, Ordering::SeqCst)
        )));
    } else if path == "/redirect" {
        let to = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("to="))
            .unwrap_or("/")
            .to_string();
        *resp.status_mut() = hyper::StatusCode::FOUND;
        resp.headers_mut().insert("location", to.parse().unwrap());
    } else if let Some(more) = redirects(&req, &path) {
        resp = more;
    } else {
        *resp.status_mut() = hyper::StatusCode::NOT_FOUND;
    }
    Ok(resp)
}

/// Redirect routes (tests/e2e/redirect.rs):
/// - `/redirect/<code>?to=<percent-encoded location>`: that status, that
///   `location`, verbatim (relative or absolute);
/// - `/loop/a` and `/loop/b`: 302 to each other;
/// - `/releases/download/<tag>/<file>`: like a release download, 302 to a
///   signed URL on another host name (`localhost`, same port) whose
///   signature is new on every request;
/// - `/objects/<file>?…`: 4096 bytes seeded by the file name (the signature
///   does not change them), as an attachment.
fn redirects(req: &Request<Incoming>, path: &str) -> Option<Response<Full<Bytes>>> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    let location = if let Some(code) = path.strip_prefix("/redirect/") {
        *resp.status_mut() = hyper::StatusCode::from_u16(code.parse().ok()?).ok()?;
        url::form_urlencoded::parse(req.uri().query()?.as_bytes())
            .find(|(k, _)| k == "to")?
            .1
            .into_owned()
    } else if let Some(which) = path.strip_prefix("/loop/") {
        *resp.status_mut() = hyper::StatusCode::FOUND;
        format!("/loop/{}", if which == "a" { "b" } else { "a" })
    } else if let Some(rest) = path.strip_prefix("/releases/download/") {
        static SIGNATURE: AtomicU64 = AtomicU64::new(0x5eed);
        let file = rest.rsplit('/').next()?;
        let authority = req
            .uri()
            .authority()
            .map(|a| a.to_string())
            .or_else(|| Some(req.headers().get("host")?.to_str().ok()?.to_string()))?;
        let port = authority.rsplit(':').next()?;
        let signature = SIGNATURE.fetch_add(0x9e37_79b9, Ordering::SeqCst);
        *resp.status_mut() = hyper::StatusCode::FOUND;
        format!(
            "https://localhost:{port}/objects/{file}?X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Expires=300&X-Amz-Signature={signature:016x}\
             &response-content-disposition=attachment%3B%20filename%3D{file}"
        )
    } else if let Some(file) = path.strip_prefix("/objects/") {
        let seed = file
            .bytes()
            .fold(7u64, |a, b| a.wrapping_mul(31).wrapping_add(b as u64));
        *resp.body_mut() = Full::new(Bytes::from(payload(4096, seed)));
        let disposition = format!("attachment; filename={file}");
        resp.headers_mut()
            .insert("content-disposition", disposition.parse().ok()?);
        return Some(resp);
    } else {
        return None;
    };
    resp.headers_mut()
        .insert("location", location.parse().ok()?);
    Some(resp)
}

/// A buildproxy serving in the background (`proxy` or `replay` with no
/// command), with the environment it printed.
pub struct Running {
    pub child: Child,
    pub env: Vec<(String, String)>,
    pub stderr: Option<std::process::ChildStderr>,
}

impl Running {
    /// Starts `buildproxy <args>` and waits for its `export` lines.
    pub fn start(args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut env = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let (k, v) = parse_export(&line);
            let last = k == "BUILDPROXY_ADDR";
            env.push((k, v));
            if last {
                break;
            }
        }
        if env.is_empty() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "buildproxy did not start: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let stderr = child.stderr.take();
        Self { child, env, stderr }
    }

    pub fn var(&self, name: &str) -> &str {
        &self.env.iter().find(|(k, _)| k == name).unwrap().1
    }

    /// Stops it with SIGTERM; returns its exit code and everything it wrote
    /// on stderr.
    pub fn stop(mut self) -> (i32, String) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let mut err = String::new();
        if let Some(mut s) = self.stderr.take() {
            std::io::Read::read_to_string(&mut s, &mut err).unwrap();
        }
        let status = self.child.wait().unwrap();
        (status.code().unwrap_or(-1), err)
    }
}

impl Drop for Running {
    /// SIGTERM first, so buildproxy removes its private temp dir; SIGKILL
    /// only if it does not stop.
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn parse_export(line: &str) -> (String, String) {
    let rest = line
        .strip_prefix("export ")
        .unwrap_or_else(|| panic!("not an export line: {line}"));
    let (k, v) = rest.split_once('=').unwrap();
    let v = v
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .unwrap_or(v);
    (k.to_string(), v.replace("'\\''", "'"))
}

/// Runs curl with exactly the given environment (plus PATH) and args.
pub fn curl(env: &[(String, String)], args: &[&str]) -> Output {
    tool("curl")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .args(["-sS", "--max-time", "60"])
        .args(args)
        .output()
        .unwrap()
}

/// curl through the proxy; panics unless it succeeded; returns the body.
pub fn fetch(env: &[(String, String)], args: &[&str]) -> Vec<u8> {
    let out = curl(env, args);
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A direct download with the upstream CA: the bytes to compare against.
pub fn direct(ca: &TestCa, url: &str) -> Vec<u8> {
    let out = curl(
        &[],
        &[
            "--noproxy",
            "*",
            "--cacert",
            ca.pem_path.to_str().unwrap(),
            "-f",
            url,
        ],
    );
    assert!(
        out.status.success(),
        "direct {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `(status, body)` of a curl call with `-w '%{http_code}'` appended.
pub fn status_and_body(env: &[(String, String)], args: &[&str]) -> (u16, String) {
    let mut a: Vec<&str> = args.to_vec();
    a.extend(["-w", "\n%{http_code}"]);
    let out = curl(env, &a);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// An HTTPS upstream that serves the files under a directory, the way a
/// static mirror serves wheels, tarballs, a dumb-protocol git repository or
/// a sparse cargo registry (the query is ignored), and answers
/// `/smart/<repo>/…` with `git http-backend` (smart-protocol git, the way
/// git forges serve it). Used by tests/e2e/clients.rs.
pub struct FileUpstream {
    pub https: SocketAddr,
    pub root: PathBuf,
    pub hits: Arc<AtomicU64>,
    _rt: Arc<tokio::runtime::Runtime>,
}

impl FileUpstream {
    pub fn start(ca: &TestCa, root: &Path) -> Self {
        let rt = Arc::new(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap(),
        );
        let hits = Arc::new(AtomicU64::new(0));
        let (h, dir) = (hits.clone(), root.to_path_buf());
        let https = spawn_server(&rt, Some(ca.server.clone()), move |r| {
            h.fetch_add(1, Ordering::SeqCst);
            serve_file(r, dir.clone())
        });
        Self {
            https,
            root: root.to_path_buf(),
            hits,
            _rt: rt,
        }
    }

    /// `https://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.https)
    }

    /// `https://localhost:<port><path>`, for clients that cannot check an
    /// IP address against a certificate through a proxy.
    pub fn named_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.https.port())
    }
}

async fn serve_file(
    req: Request<Incoming>,
    root: PathBuf,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    if let Some(rest) = path.strip_prefix("/smart") {
        return Ok(git_http_backend(req, root, rest.to_string()).await);
    }
    let mut resp = Response::new(Full::new(Bytes::new()));
    let rel = path.trim_start_matches('/');
    let safe = !rel.split('/').any(|c| c == ".." || c.is_empty());
    match std::fs::read(root.join(rel)) {
        Ok(body) if safe => {
            *resp.body_mut() = Full::new(Bytes::from(body));
            resp.headers_mut()
                .insert("content-type", "application/octet-stream".parse().unwrap());
        }
        _ => *resp.status_mut() = hyper::StatusCode::NOT_FOUND,
    }
    Ok(resp)
}

/// Runs `git http-backend` as a CGI program for one request.
async fn git_http_backend(
    req: Request<Incoming>,
    root: PathBuf,
    path_info: String,
) -> Response<Full<Bytes>> {
    use http_body_util::BodyExt;
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let mut cmd = tool("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_PROJECT_ROOT", &root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", &path_info)
        .env("REQUEST_METHOD", req.method().as_str())
        .env("QUERY_STRING", req.uri().query().unwrap_or(""))
        .env("CONTENT_TYPE", header("content-type"))
        .env("HTTP_GIT_PROTOCOL", header("git-protocol"))
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let out = tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || stdin.write_all(&body));
        let out = child.wait_with_output().unwrap();
        let _ = writer.join();
        out.stdout
    })
    .await
    .unwrap();
    // CGI output: header lines, a blank line, the body.
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .or_else(|| {
            out.windows(2)
                .position(|w| w == b"\n\n")
                .map(|i| (i, i + 2))
        })
        .unwrap_or((out.len(), out.len()));
    let mut resp = Response::new(Full::new(Bytes::copy_from_slice(&out[split.1..])));
    for line in String::from_utf8_lossy(&out[..split.0]).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value
                .split(' ')
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or(500);
            *resp.status_mut() = hyper::StatusCode::from_u16(code).unwrap();
        } else if let (Ok(n), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(name.trim().as_bytes()),
            value.parse(),
        ) {
            resp.headers_mut().insert(n, v);
        }
    }
    resp
}

/// An HTTP/1.1 upstream on 127.0.0.1 that fails on purpose, written on raw
/// sockets so it can do what a well-behaved server library never does
/// (tests/e2e/reliability.rs):
/// - `/ok/<n>`: n bytes of `payload(n, 1)`, whole;
/// - `/reset/<n>`: promises 2n bytes, sends n, then resets the connection;
/// - `/reset-chunked/<n>`: a chunked body: n bytes, then a reset, no last
///   chunk;
/// - `/short/<n>`: promises n + 1000 bytes, sends n, then closes cleanly;
/// - `/stall-head`: reads the request and never answers;
/// - `/stall-body/<n>`: promises 2n bytes, sends n, then sends nothing.
///
/// A stalled connection is held until the proxy gives up on it.
pub struct FaultyUpstream {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicU64>,
}

impl FaultyUpstream {
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicU64::new(0));
        let h = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let h = h.clone();
                std::thread::spawn(move || {
                    h.fetch_add(1, Ordering::SeqCst);
                    let _ = faulty_exchange(stream);
                });
            }
        });
        Self { addr, hits }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

fn faulty_exchange(mut stream: std::net::TcpStream) -> std::io::Result<()> {
    use std::io::Read;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let target = head.split(' ').nth(1).unwrap_or("/").to_string();
    let path = target
        .split_once("://")
        .map_or(target.as_str(), |(_, rest)| {
            &rest[rest.find('/').unwrap_or(rest.len())..]
        })
        .to_string();
    let (route, n) = match path.rsplit_once('/').map(|(r, n)| (r, n.parse::<usize>())) {
        Some((r, Ok(n))) => (r.to_string(), n),
        _ => (path.clone(), 0),
    };
    let body = payload(n, 1);
    let hold = |mut s: std::net::TcpStream| {
        // Until the proxy hangs up (read returns 0 or fails).
        let mut sink = [0u8; 1024];
        while matches!(s.read(&mut sink), Ok(k) if k > 0) {}
    };
    match route.as_str() {
        "/ok" => {
            write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-length: {n}\r\nconnection: close\r\n\r\n"
            )?;
            stream.write_all(&body)?;
        }
        "/reset" => {
            write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                2 * n
            )?;
            stream.write_all(&body)?;
            stream.flush()?;
            std::thread::sleep(std::time::Duration::from_millis(100));
            reset(stream);
        }
        "/reset-chunked" => {
            write!(
                stream,
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n{n:x}\r\n"
            )?;
            stream.write_all(&body)?;
            stream.write_all(b"\r\n")?;
            stream.flush()?;
            std::thread::sleep(std::time::Duration::from_millis(100));
            reset(stream);
        }
        "/short" => {
            write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                n + 1000
            )?;
            stream.write_all(&body)?;
            stream.shutdown(std::net::Shutdown::Write)?;
            hold(stream);
        }
        "/stall-head" => hold(stream),
        "/stall-body" => {
            write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                2 * n
            )?;
            stream.write_all(&body)?;
            hold(stream);
        }
        _ => {
            write!(
                stream,
                "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )?;
        }
    }
    Ok(())
}

/// Closes with a TCP reset (SO_LINGER 0) instead of a clean FIN.
fn reset(stream: std::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own, with a valid linger struct.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(stream);
}

/// A 127.0.0.1 address where a TCP connect hangs: a listener with a backlog
/// of 0 whose one queue slot is taken and never accepted, so the kernel
/// drops further SYNs. Keep the value alive while it is used.
pub struct Blackhole {
    pub addr: SocketAddr,
    _listener: std::net::TcpListener,
    _filler: std::net::TcpStream,
}

impl Blackhole {
    pub fn new() -> Self {
        use std::os::fd::FromRawFd;
        // SAFETY: plain socket calls on a descriptor we create and hand to
        // TcpListener, which then owns it.
        let listener = unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            assert!(fd >= 0);
            let mut sa: libc::sockaddr_in = std::mem::zeroed();
            sa.sin_family = libc::AF_INET as libc::sa_family_t;
            sa.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            assert_eq!(
                libc::bind(fd, (&sa as *const libc::sockaddr_in).cast(), len),
                0
            );
            assert_eq!(libc::listen(fd, 0), 0);
            std::net::TcpListener::from_raw_fd(fd)
        };
        let addr = listener.local_addr().unwrap();
        let filler = std::net::TcpStream::connect(addr).unwrap();
        Self {
            addr,
            _listener: listener,
            _filler: filler,
        }
    }
}

/// An HTTPS upstream on 127.0.0.1 whose certificate, signed by its own CA
/// (written to `ca_pem`), names only `elsewhere.invalid`: trusted, but for
/// the wrong name.
pub struct WrongNameUpstream {
    pub addr: SocketAddr,
    pub ca_pem: PathBuf,
    _rt: Arc<tokio::runtime::Runtime>,
}

impl WrongNameUpstream {
    pub fn start(dir: &Path) -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::default();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["elsewhere.invalid".to_string()]).unwrap();
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
        let ca_pem = dir.join("wrong-name-ca.pem");
        std::fs::write(&ca_pem, ca_cert.pem()).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf_cert.der().clone()], key)
        .unwrap();
        let rt = Arc::new(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap(),
        );
        let addr = spawn_server(&rt, Some(Arc::new(server)), |_r| async {
            Ok(Response::new(Full::new(Bytes::from_static(b"x"))))
        });
        Self {
            addr,
            ca_pem,
            _rt: rt,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }
}

// --- running buildproxy the way a user does -------------------------------

/// `buildproxy capture … -- sh -c SCRIPT` in `dir`; (exit code, stderr).
pub fn capture(dir: &Path, ca: &TestCa, extra: &[&str], script: &str) -> (i32, String) {
    let out = Command::new(BIN)
        .current_dir(dir)
        .args(["capture", "--proxy-loopback", "--upstream-ca"])
        .arg(&ca.pem_path)
        .args(extra)
        .args(["--", "sh", "-c", script])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), err)
}

/// `buildproxy replay … -- sh -c SCRIPT` in a network namespace with only
/// loopback: nothing can reach the network.
pub fn replay_offline(dir: &Path, extra: &[&str], script: &str) -> (i32, String) {
    replay_offline_with(dir, &[], extra, script)
}

/// [`replay_offline`] with `env` set for buildproxy (and the script).
pub fn replay_offline_with(
    dir: &Path,
    env: &[(&str, &str)],
    extra: &[&str],
    script: &str,
) -> (i32, String) {
    let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let mut inner = format!("ip link set lo up; exec {BIN} replay --proxy-loopback");
    for a in extra {
        inner.push(' ');
        inner.push_str(&quote(a));
    }
    inner.push_str(&format!(" -- sh -c {}", quote(script)));
    let out = tool("unshare")
        .current_dir(dir)
        .envs(env.iter().copied())
        .args(["-rn", "sh", "-c", &inner])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), err)
}

/// `buildproxy capture` in `dir` with the test CA trusted, running
/// `sh -c SCRIPT`; stderr piped.
pub fn capture_command(
    dir: &std::path::Path,
    ca: &TestCa,
    extra: &[&str],
    script: &str,
) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .args([
            "capture",
            "--proxy-loopback",
            "--upstream-ca",
            ca.pem_path.to_str().unwrap(),
        ])
        .args(extra)
        .args(["--", "sh", "-c", script])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// Waits (bounded) until a file a test's command touches appears.
pub fn wait_for(path: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A real wheel of `project` 1.0, built with Python's zipfile (pip and uv
/// read its metadata), holding `padding` bytes of data that do not
/// compress, so a client that stops reading it stops early.
pub fn write_wheel(path: &Path, project: &str, padding: usize) {
    let py = r#"
import base64, hashlib, random, sys, zipfile
path, name, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
info = f"{name}-1.0.dist-info"
rng = random.Random(7)
files = {
    f"{name}/__init__.py": b"VALUE = 42\n",
    info + "/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode(),
    info + "/WHEEL": b"Wheel-Version: 1.0\nGenerator: buildproxy-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
if size:
    files[f"{name}/data.bin"] = rng.randbytes(size)
record = ""
for n, data in files.items():
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record += f"{n},sha256={digest},{len(data)}\n"
files[info + "/RECORD"] = (record + info + "/RECORD,,\n").encode()
with zipfile.ZipFile(path, "w") as z:
    for n, data in files.items():
        z.writestr(zipfile.ZipInfo(n, (2020, 1, 1, 0, 0, 0)), data)
"#;
    let out = tool("python3")
        .args([
            "-c",
            py,
            path.to_str().unwrap(),
            project,
            &padding.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// --- outside programs ----------------------------------------------------------

/// The Debian package that brings `program`, from `tests/tools.txt` (the
/// list `tests/run.sh` installs from).
pub fn package_of(program: &str) -> &'static str {
    include_str!("../tools.txt")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .find(|(p, _)| *p == program)
        .map_or("(unknown: add it to tests/tools.txt)", |(_, pkg)| {
            pkg.trim()
        })
}

/// Whether `program` is on PATH (or is a path that exists).
pub fn installed(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).exists();
    }
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(program)).is_ok_and(|m| {
                use std::os::unix::fs::PermissionsExt as _;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            })
        })
    })
}

/// A command for an outside program this test needs. When it is missing the
/// test fails with one line naming the package to install; the other tests
/// go on (tests/run.sh runs them with --no-fail-fast).
pub fn tool(program: &str) -> Command {
    assert!(installed(program), "{}", missing_tool(program));
    Command::new(program)
}

pub fn missing_tool(program: &str) -> String {
    format!(
        "this test needs `{program}`, which is not installed: apt-get install {} \
         (tests/run.sh installs everything the tests need)",
        package_of(program)
    )
}

/// A Nix tool as Debian's nix-bin ships it, as root: no `nixbld` group, no
/// daemon, no nix.conf. Nix refuses to build while `build-users-group` names
/// a group that does not exist, so builds run as the caller instead; the
/// user's own NIX_CONFIG is kept, this line comes last.
pub fn nix_tool(program: &str) -> Command {
    let mut cmd = tool(program);
    let mut config = std::env::var("NIX_CONFIG").unwrap_or_default();
    config.push_str("\nbuild-users-group =\n");
    cmd.env("NIX_CONFIG", config);
    cmd
}

// --- reading what capture wrote ---------------------------------------------

/// A generated (or hand-written) content file through real Nix, with a
/// stand-in fetchurl that returns its arguments: `[{url, status, headers,
/// file}]`, with nix-buildproxy's defaults (200, no headers) where an entry
/// leaves them out.
pub fn eval_content(file: &Path) -> Vec<serde_json::Value> {
    let expr = format!(
        "map (e: {{ inherit (e) url; status = e.status_code or 200; headers = e.headers or {{ }}; \
         file = e.file; }}) (import {} {{ fetchurl = args: args; }})",
        file.display()
    );
    let out = nix_tool("nix-instantiate")
        .args(["--eval", "--strict", "--json", "-E", &expr])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nix-instantiate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The entry for `url`, or a panic that shows them all.
pub fn entry<'a>(entries: &'a [serde_json::Value], url: &str) -> &'a serde_json::Value {
    entries
        .iter()
        .find(|e| e["url"] == url)
        .unwrap_or_else(|| panic!("no entry for {url} in {entries:#?}"))
}

// --- servers ------------------------------------------------------------------

/// Serves `handler` on a new 127.0.0.1 port, on `rt`: HTTP/1.1 and h2
/// (ALPN), behind TLS when `tls` is given. Returns the bound address.
pub fn spawn_server<F, Fut, B>(
    rt: &tokio::runtime::Runtime,
    tls: Option<Arc<rustls::ServerConfig>>,
    handler: F,
) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    rt.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (handler, acceptor) = (handler.clone(), acceptor.clone());
            tokio::spawn(async move {
                let service = service_fn(handler);
                let builder = auto::Builder::new(TokioExecutor::new());
                let _ = match acceptor {
                    None => {
                        builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await
                    }
                    Some(tls) => match tls.accept(stream).await {
                        Ok(t) => builder.serve_connection(TokioIo::new(t), service).await,
                        Err(_) => return,
                    },
                };
            });
        }
    });
    addr
}
