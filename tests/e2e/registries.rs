//! Package registries, reproduced by local servers in the ways that matter
//! to a capture: each test runs the real client through capture, then
//! through offline replay, and fetches every recorded entry as Nix would.
//!
//! - A Python package index that negotiates like the real one: the simple
//!   page of a project is JSON for a client that asks for
//!   `application/vnd.pypi.simple.v1+json` (pip, uv) and HTML otherwise,
//!   with `Vary: Accept`. The same URL, two bodies: the entry must carry
//!   the request headers that chose its body, replay must answer each
//!   client with its own, and `fetchurl` must download the same bytes.
//!   Its file host serves and advertises ranges (uv asks for a wheel's
//!   tail first).
//! - A Debian repository: `Release`, `Packages` fetched by hash
//!   (`Acquire-By-Hash`), a `.deb` in the pool; apt over HTTPS.
//! - `capture --verify` against pages fetchurl cannot reproduce, and the
//!   summary of a client that distrusts buildproxy's CA.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use sha2::{Digest, Sha256};

use crate::clients::{require, require_pip};
use crate::nix::{fixture, nix, nix_build, sh_quote};
use crate::support::*;

/// What pip and uv ask a package index for.
const SIMPLE_JSON: &str = "application/vnd.pypi.simple.v1+json";

/// An HTTPS server on 127.0.0.1 for one test, counting requests.
struct Served {
    addr: std::net::SocketAddr,
    hits: Arc<AtomicU64>,
    _rt: tokio::runtime::Runtime,
}

impl Served {
    fn start<F, Fut>(ca: &TestCa, handler: F) -> Self
    where
        F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Response<Full<Bytes>>, Infallible>>
            + Send
            + 'static,
    {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let hits = Arc::new(AtomicU64::new(0));
        let h = hits.clone();
        let addr = spawn_server(&rt, Some(ca.server.clone()), move |r| {
            h.fetch_add(1, Ordering::SeqCst);
            handler(r)
        });
        Self {
            addr,
            hits,
            _rt: rt,
        }
    }

    fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

/// A package index on 127.0.0.1 serving the projects under `root`
/// (`root/<project>/<file>`): `/simple/<project>/` (JSON or HTML, by
/// `Accept`, with `Vary`) and `/files/<project>/<file>`.
struct PackageIndex(Served);

impl PackageIndex {
    fn start(ca: &TestCa, root: &Path) -> Self {
        let root = root.to_path_buf();
        Self(Served::start(ca, move |r| serve_index(r, root.clone())))
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.0.addr)
    }

    fn hits(&self) -> u64 {
        self.0.hits()
    }
}

async fn serve_index(
    req: Request<Incoming>,
    root: PathBuf,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let mut resp = Response::new(Full::new(Bytes::new()));
    let project_dir = |p: &str| {
        let ok = !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        ok.then(|| root.join(p)).filter(|d| d.is_dir())
    };
    if let Some(project) = path
        .strip_prefix("/simple/")
        .and_then(|p| p.strip_suffix('/'))
        && let Some(dir) = project_dir(project)
    {
        let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|f| {
                let name = f.file_name().to_string_lossy().into_owned();
                let digest = Sha256::digest(std::fs::read(f.path()).unwrap());
                (name, hex(&digest))
            })
            .collect();
        files.sort();
        let accept = header(&req, "accept");
        let (body, kind) = if accept.contains(SIMPLE_JSON) {
            let files: Vec<_> = files
                .iter()
                .map(|(name, sha)| {
                    serde_json::json!({
                        "filename": name,
                        "url": format!("/files/{project}/{name}"),
                        "hashes": { "sha256": sha },
                    })
                })
                .collect();
            let doc = serde_json::json!({
                "meta": { "api-version": "1.0" },
                "name": project,
                "files": files,
            });
            (doc.to_string(), SIMPLE_JSON)
        } else {
            let links: String = files
                .iter()
                .map(|(name, sha)| {
                    format!("<a href=\"/files/{project}/{name}#sha256={sha}\">{name}</a><br/>\n")
                })
                .collect();
            (
                format!(
                    "<!DOCTYPE html>\n<html><head><meta name=\"pypi:repository-version\" \
                     content=\"1.0\"><title>Links for {project}</title></head>\n<body>\n\
                     <h1>Links for {project}</h1>\n{links}</body></html>\n"
                ),
                "text/html",
            )
        };
        *resp.body_mut() = Full::new(Bytes::from(body));
        let h = resp.headers_mut();
        h.insert("content-type", kind.parse().unwrap());
        h.insert("vary", "Accept, Accept-Encoding".parse().unwrap());
    } else if path == "/dynamic" {
        // A generated page: other bytes on every download.
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        *resp.body_mut() = Full::new(Bytes::from(format!("generated {n}\n")));
    } else if path == "/by-agent" {
        // Negotiation on a header capture does not record.
        let body = if header(&req, "user-agent").starts_with("pip/") {
            "for pip\n"
        } else {
            "for anyone\n"
        };
        *resp.body_mut() = Full::new(Bytes::from(body));
        resp.headers_mut()
            .insert("vary", "User-Agent".parse().unwrap());
    } else if let Some(rest) = path.strip_prefix("/files/")
        && let Some((project, file)) = rest.split_once('/')
        && let Some(dir) = project_dir(project)
        && !file.contains('/')
        && let Ok(bytes) = std::fs::read(dir.join(file))
    {
        // Like the registry's file host: ranges served and advertised (uv
        // reads a wheel's metadata from its tail before downloading it).
        let range = byte_range(header(&req, "range"), bytes.len());
        let h = resp.headers_mut();
        h.insert("content-type", "application/octet-stream".parse().unwrap());
        h.insert("accept-ranges", "bytes".parse().unwrap());
        match range {
            Some((start, end)) => {
                let total = bytes.len();
                *resp.status_mut() = hyper::StatusCode::PARTIAL_CONTENT;
                resp.headers_mut().insert(
                    "content-range",
                    format!("bytes {start}-{}/{total}", end - 1)
                        .parse()
                        .unwrap(),
                );
                *resp.body_mut() = Full::new(Bytes::copy_from_slice(&bytes[start..end]));
            }
            None => *resp.body_mut() = Full::new(Bytes::from(bytes)),
        }
    } else {
        *resp.status_mut() = hyper::StatusCode::NOT_FOUND;
    }
    Ok(resp)
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` as a half-open range of `len`.
fn byte_range(header: &str, len: usize) -> Option<(usize, usize)> {
    let spec = header.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => (len.saturating_sub(n.parse().ok()?), len),
        (a, "") => (a.parse().ok()?, len),
        (a, b) => (a.parse().ok()?, (b.parse::<usize>().ok()? + 1).min(len)),
    };
    (start < end).then_some((start, end))
}

/// `python3 -c SCRIPT ARGS…`, which must succeed.
fn python(script: &str, args: &[&str]) {
    let out = tool("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A request header as text; empty when absent or not text.
fn header<'a>(req: &'a Request<Incoming>, name: &str) -> &'a str {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An sdist whose in-tree build backend needs nothing from an index: pip
/// reads its metadata (it runs `prepare_metadata_for_build_wheel`) as it
/// would a setuptools project's, without network.
fn write_sdist(path: &Path) {
    let py = r#"
import io, sys, tarfile
backend = '''
import os
def get_requires_for_build_wheel(config_settings=None):
    return []
def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    info = "bpsdist-1.0.dist-info"
    os.makedirs(os.path.join(metadata_directory, info))
    with open(os.path.join(metadata_directory, info, "METADATA"), "w") as f:
        f.write("Metadata-Version: 2.1\\nName: bpsdist\\nVersion: 1.0\\n")
    return info
def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    raise RuntimeError("not needed by pip download")
'''
files = {
    "bpsdist-1.0/PKG-INFO": b"Metadata-Version: 2.1\nName: bpsdist\nVersion: 1.0\n",
    "bpsdist-1.0/pyproject.toml": b'[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n',
    "bpsdist-1.0/backend.py": backend.encode(),
}
with tarfile.open(sys.argv[1], "w:gz") as t:
    for name, data in files.items():
        info = tarfile.TarInfo(name)
        info.size, info.mtime = len(data), 1577836800
        t.addfile(info, io.BytesIO(data))
"#;
    python(py, &[path.to_str().unwrap()]);
}

/// A scratch directory with an index serving a wheel-only and an
/// sdist-only project.
struct Registry {
    s: Scratch,
    ca: TestCa,
    index: PackageIndex,
}

impl Registry {
    fn new() -> Self {
        let s = Scratch::new();
        let ca = TestCa::new(s.dir.path());
        for p in ["bpdemo", "bpsdist"] {
            std::fs::create_dir_all(s.path("projects").join(p)).unwrap();
        }
        write_wheel(
            &s.path("projects/bpdemo/bpdemo-1.0-py3-none-any.whl"),
            "bpdemo",
            0,
        );
        write_sdist(&s.path("projects/bpsdist/bpsdist-1.0.tar.gz"));
        let index = PackageIndex::start(&ca, &s.path("projects"));
        Self { s, ca, index }
    }

    /// `pip download` of both projects from the index into `dir`.
    fn pip(&self, dir: &str) -> String {
        format!(
            "python3 -m pip download --no-cache-dir --disable-pip-version-check \
             --index-url {} --dest {dir} bpdemo bpsdist",
            self.index.url("/simple/")
        )
    }
}

/// The entries of a content file through real Nix, with a fetchurl that
/// returns its arguments.
fn entries_of(file: &Path) -> Vec<serde_json::Value> {
    let expr = format!("import {} {{ fetchurl = args: args; }}", file.display());
    let out = nix(
        "nix-instantiate",
        &["--eval", "--strict", "--json", "-E", &expr],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `mkContent` of a content file, built: Nix fetches every body with the
/// stand-in fetchurl (a fixed-output derivation each, which fails on a
/// hash mismatch). Returns the replay JSON, `file`s in the store.
fn fetch_as_nix_does(content: &Path) -> Vec<serde_json::Value> {
    let json = nix_build(&[
        &fixture("fetch-content.nix"),
        "--argstr",
        "content",
        content.to_str().unwrap(),
    ])
    .remove(0);
    serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap()
}

/// Nix fetches every entry of `content` (fixed-output derivations: a body
/// that is not what the hash says fails the build), and each body is what a
/// client gets from the upstream for that URL with the entry's recorded
/// request headers. Returns how many bodies were fetched.
pub fn assert_nix_fetches_every_entry(content: &Path, ca: &TestCa) -> usize {
    let fetched = fetch_as_nix_does(content);
    let mut checked = 0;
    for e in fetched.iter().filter(|e| e["file"].is_string()) {
        let url = e["url"].as_str().unwrap();
        let headers: Vec<String> = e["request_headers"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap()))
                    .collect()
            })
            .unwrap_or_default();
        let body = std::fs::read(e["file"].as_str().unwrap()).unwrap();
        assert_eq!(body, direct_with(ca, url, &headers), "{url} {headers:?}");
        checked += 1;
    }
    assert!(checked > 0, "nothing to fetch: {fetched:#?}");
    checked
}

/// curl of `url` without a proxy, with extra headers, as fetchurl sends it.
fn direct_with(ca: &TestCa, url: &str, headers: &[String]) -> Vec<u8> {
    let mut cmd = tool("curl");
    cmd.args(["-sS", "--fail", "--noproxy", "*", "--cacert"])
        .arg(&ca.pem_path);
    for h in headers {
        cmd.args(["--header", h]);
    }
    let out = cmd.arg(url).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn pip_index_negotiation_is_captured_replayed_and_fetched_by_nix_byte_for_byte() {
    require_pip();
    let r = Registry::new();
    let page = r.index.url("/simple/bpdemo/");
    // pip asks for JSON; curl, like fetchurl, for anything (and gets HTML).
    let script = format!("{} && curl -fsS -o page.html {page}", r.pip("dl"));
    let (code, err) = capture(
        r.s.dir.path(),
        &r.ca,
        &["--require-secret", "--store", "store"],
        &script,
    );
    assert_eq!(code, 0, "capture: {err}");
    let content = r.s.path("proxy_content.nix");
    let entries = entries_of(&content);
    let pages: Vec<_> = entries.iter().filter(|e| e["url"] == page).collect();
    assert_eq!(pages.len(), 2, "one entry per representation: {entries:#?}");
    let json = pages
        .iter()
        .find(|e| e["request_headers"]["accept"].is_string())
        .unwrap_or_else(|| panic!("no entry records pip's accept: {pages:#?}"));
    let pip_accept = json["request_headers"]["accept"].as_str().unwrap();
    assert!(pip_accept.contains(SIMPLE_JSON), "{pip_accept}");
    assert_eq!(json["headers"]["content-type"], SIMPLE_JSON);
    assert_eq!(
        json["file"]["curlOptsList"],
        serde_json::json!(["--header", format!("accept: {pip_accept}")])
    );
    let html = pages.iter().find(|e| e.get("request_headers").is_none());
    assert_eq!(
        html.unwrap()["headers"]["content-type"],
        "text/html",
        "{pages:#?}"
    );
    for file in ["bpdemo-1.0-py3-none-any.whl", "bpsdist-1.0.tar.gz"] {
        assert!(
            r.s.path("dl").join(file).is_file(),
            "pip did not get {file}"
        );
    }

    // Offline: pip gets its JSON, curl its HTML, each as the index sent it.
    let hits = r.index.hits();
    let replay = format!(
        "{} && curl -fsS -o page.html {page} && curl -fsS -o page.json -H {} {page}",
        r.pip("dl-replay"),
        sh_quote(&format!("Accept: {pip_accept}"))
    );
    let (code, err) = replay_offline(
        r.s.dir.path(),
        &["--require-secret", "--strict", "--store", "store"],
        &replay,
    );
    assert_eq!(code, 0, "offline replay: {err}");
    assert_eq!(r.index.hits(), hits, "replay reached the index");
    let direct_json = direct_with(&r.ca, &page, &[format!("Accept: {pip_accept}")]);
    assert!(direct_json.starts_with(b"{"));
    assert_eq!(std::fs::read(r.s.path("page.json")).unwrap(), direct_json);
    assert_eq!(
        std::fs::read(r.s.path("page.html")).unwrap(),
        direct(&r.ca, &page)
    );
    for file in ["bpdemo-1.0-py3-none-any.whl", "bpsdist-1.0.tar.gz"] {
        assert_eq!(
            std::fs::read(r.s.path("dl-replay").join(file)).unwrap(),
            std::fs::read(r.s.path("dl").join(file)).unwrap(),
            "{file}"
        );
    }

    // Two JSON pages (pip), one HTML page (curl), the wheel and the sdist.
    assert_eq!(assert_nix_fetches_every_entry(&content, &r.ca), 5);

    // A fetcher that cannot send headers is told so, with the fix.
    let expr = format!(
        "let pkgs = import {} {{ }}; lib = import {} (pkgs // {{ fetchurl = pkgs.builtinFetchurl; }}); \
         in lib.mkContent {}",
        fixture("stand-ins.nix"),
        crate::nix::repo().join("nix").display(),
        content.display()
    );
    let out = nix(
        "nix-instantiate",
        &["--eval", "--strict", "-E", &format!("({expr}).drvPath")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "evaluated with a header-less fetchurl"
    );
    assert!(
        err.contains(&page) && err.contains("cannot send headers"),
        "{err}"
    );
    assert!(err.contains("nixpkgs' fetchurl"), "{err}");
}

#[test]
fn replay_never_answers_a_request_with_a_representation_it_did_not_ask_for() {
    require_pip();
    let r = Registry::new();
    let page = r.index.url("/simple/bpdemo/");
    let (code, err) = capture(
        r.s.dir.path(),
        &r.ca,
        &["--require-secret", "--store", "store"],
        &r.pip("dl"),
    );
    assert_eq!(code, 0, "capture: {err}");
    // Only pip's JSON was captured: curl's request for the page is a miss,
    // and --strict fails the run, naming the URL and what was recorded.
    let (code, err) = replay_offline(
        r.s.dir.path(),
        &["--require-secret", "--strict", "--store", "store"],
        &format!("curl -sS -o page {page}; exit 0"),
    );
    assert_ne!(code, 0, "replay served JSON to curl: {err}");
    assert!(err.contains(&format!("MISS GET {page}")), "{err}");
    let body = std::fs::read_to_string(r.s.path("page")).unwrap();
    assert!(body.contains("for other request headers"), "{body}");
    assert!(body.contains(SIMPLE_JSON), "{body}");
}

/// The number in "N error(s)" of a capture's summary line.
fn errors_in_summary(err: &str) -> usize {
    let line = err
        .lines()
        .find(|l| l.starts_with("buildproxy: wrote "))
        .unwrap_or_else(|| panic!("no summary in:\n{err}"));
    let (_, rest) = line.split_once("); ").unwrap();
    rest.split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn uv_installs_through_capture_and_offline_replay_without_a_head_entry_or_a_range_error() {
    assert!(
        installed("uv"),
        "this test needs uv: python3 -m pip install --target target/test-tools uv, with target/test-tools/bin on PATH (tests/run.sh does both)"
    );
    let r = Registry::new();
    std::fs::create_dir_all(r.s.path("projects/bpbig")).unwrap();
    write_wheel(
        &r.s.path("projects/bpbig/bpbig-1.0-py3-none-any.whl"),
        "bpbig",
        4 << 20,
    );
    let wheel = r.index.url("/files/bpbig/bpbig-1.0-py3-none-any.whl");
    let script = |target: &str| {
        format!(
            "UV_CACHE_DIR=$PWD/uv-cache-{target} UV_PYTHON_DOWNLOADS=never \
             uv pip install --no-cache --python \"$(command -v python3)\" --target {target} \
             --index-url {} bpbig bpdemo",
            r.index.url("/simple/")
        )
    };
    let out = capture_command(
        r.s.dir.path(),
        &r.ca,
        &["--require-secret", "--store", "store"],
        &script("t1"),
    )
    .env("BUILDPROXY_LOG", "buildproxy=info")
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "capture: {err}");
    // uv asked for the wheel's tail, got the whole wheel (capture asks
    // upstream for whole bodies) and stopped reading: not an error.
    assert!(
        err.contains("client went away"),
        "uv did not abandon a body: {err}"
    );
    assert_eq!(errors_in_summary(&err), 0, "{err}");
    // Logs into a pipe carry no colour codes.
    assert!(
        !err.contains('\u{1b}'),
        "colour codes in a log that is not a terminal: {err:?}"
    );
    let entries = entries_of(&r.s.path("proxy_content.nix"));
    let for_wheel: Vec<_> = entries.iter().filter(|e| e["url"] == wheel).collect();
    assert_eq!(
        for_wheel.len(),
        1,
        "the HEAD beside the GET: {for_wheel:#?}"
    );
    assert_eq!(for_wheel[0]["method"], "GET");
    assert!(r.s.path("t1/bpbig/data.bin").is_file());
    // Every entry, index pages and wheels, as Nix fetches it.
    assert_nix_fetches_every_entry(&r.s.path("proxy_content.nix"), &r.ca);

    let hits = r.index.hits();
    let (code, err) = replay_offline(
        r.s.dir.path(),
        &["--require-secret", "--strict", "--store", "store"],
        &script("t2"),
    );
    assert_eq!(code, 0, "offline replay: {err}");
    assert_eq!(r.index.hits(), hits, "replay reached the index");
    assert_eq!(
        std::fs::read(r.s.path("t2/bpbig/data.bin")).unwrap(),
        std::fs::read(r.s.path("t1/bpbig/data.bin")).unwrap()
    );
    assert!(r.s.path("t2/bpdemo/__init__.py").is_file());
}

#[test]
fn capture_verify_and_check_fetch_report_what_fetchurl_would_not_reproduce_each_with_the_fix() {
    require_pip();
    let r = Registry::new();
    let (dynamic, by_agent) = (r.index.url("/dynamic"), r.index.url("/by-agent"));
    // The negotiated page (pip's JSON) is fetched with its recorded accept:
    // it verifies. A generated page and a page chosen by user agent do not.
    let script = format!(
        "{} && curl -fsS -o /dev/null {dynamic} && curl -fsS -A pip/23 -o /dev/null {by_agent}",
        r.pip("dl")
    );
    let (code, err) = capture(r.s.dir.path(), &r.ca, &["--verify"], &script);
    assert_eq!(code, 1, "--verify must fail the run: {err}");
    assert!(
        err.contains("--verify: 2 of 6 bodies fetchurl would not reproduce"),
        "{err}"
    );
    for url in [&dynamic, &by_agent] {
        let line = err
            .lines()
            .find(|l| l.starts_with(&format!("buildproxy:   {url}:")))
            .unwrap_or_else(|| panic!("{url} not reported:\n{err}"));
        assert!(line.contains("recorded sha256-"), "{line}");
    }
    assert!(
        err.contains("fix: if the server picks the body by a request header"),
        "{err}"
    );
    // The file is written all the same: the report is about Nix's fetch.
    assert!(r.s.path("proxy_content.nix").is_file());
    // `check --fetch` finds the same two in the file, later.
    let out = check_fetch(r.s.dir.path(), &r.ca);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("check proxy_content.nix: 2 of 6 bodies fetchurl would not reproduce"),
        "{err}"
    );
    assert!(err.contains(&format!("buildproxy:   {dynamic}:")), "{err}");

    let s2 = Scratch::new();
    let (code, err) = capture(s2.dir.path(), &r.ca, &["--verify"], &r.pip("dl"));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(
            "--verify: 4 bodies downloaded as fetchurl will download them: the same bytes"
        ),
        "{err}"
    );
    let out = check_fetch(s2.dir.path(), &r.ca);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `buildproxy check --fetch proxy_content.nix` in `dir`.
fn check_fetch(dir: &Path, ca: &TestCa) -> std::process::Output {
    std::process::Command::new(BIN)
        .current_dir(dir)
        .args(["check", "--fetch", "proxy_content.nix", "--upstream-ca"])
        .arg(&ca.pem_path)
        .output()
        .unwrap()
}

/// A Debian-style repository under `root`: one `.deb` in the pool, its
/// `Packages` index (also under `by-hash/SHA256/`), and a `Release` that
/// lists it and says `Acquire-By-Hash: yes`, so apt asks for it by hash.
/// Returns the `.deb`'s path under `root`.
fn write_apt_repo(root: &Path) -> String {
    let build = root.join("../deb-build/bphello");
    std::fs::create_dir_all(build.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(build.join("usr/share/bphello")).unwrap();
    std::fs::write(
        build.join("DEBIAN/control"),
        "Package: bphello\nVersion: 1.0\nArchitecture: amd64\nMaintainer: buildproxy tests \
         <tests@buildproxy.invalid>\nDescription: a package served by a test repository\n",
    )
    .unwrap();
    std::fs::write(
        build.join("usr/share/bphello/hello.txt"),
        payload(50_000, 9),
    )
    .unwrap();
    let deb = "pool/main/b/bphello/bphello_1.0_amd64.deb";
    std::fs::create_dir_all(root.join("pool/main/b/bphello")).unwrap();
    let out = tool("dpkg-deb")
        .args(["--build", "--root-owner-group"])
        .arg(&build)
        .arg(root.join(deb))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deb_bytes = std::fs::read(root.join(deb)).unwrap();
    let packages = format!(
        "Package: bphello\nVersion: 1.0\nArchitecture: amd64\nMaintainer: buildproxy tests \
         <tests@buildproxy.invalid>\nFilename: {deb}\nSize: {}\nSHA256: {}\nDescription: a \
         package served by a test repository\n\n",
        deb_bytes.len(),
        hex(&Sha256::digest(&deb_bytes))
    );
    let dir = root.join("dists/stable/main/binary-amd64");
    std::fs::create_dir_all(dir.join("by-hash/SHA256")).unwrap();
    let packages_sha = hex(&Sha256::digest(packages.as_bytes()));
    std::fs::write(dir.join("Packages"), &packages).unwrap();
    std::fs::write(dir.join("by-hash/SHA256").join(&packages_sha), &packages).unwrap();
    std::fs::write(
        root.join("dists/stable/Release"),
        format!(
            "Origin: buildproxy-test\nSuite: stable\nCodename: stable\n\
             Date: Thu, 01 Jan 2026 00:00:00 UTC\nArchitectures: amd64\nComponents: main\n\
             Acquire-By-Hash: yes\nSHA256:\n {packages_sha} {} main/binary-amd64/Packages\n",
            packages.len()
        ),
    )
    .unwrap();
    deb.to_string()
}

/// apt-get with every state and list in `$PWD/<phase>` (nothing of the
/// system's), the test repository as its only source, no privilege drop
/// (it fails in a user namespace).
fn apt_script(repo: &str, phase: &str, then: &str) -> String {
    format!(
        "set -e; mkdir -p {phase}/state/lists/partial {phase}/cache/archives/partial {phase}/parts\n\
         cd {phase}; : > status\n\
         echo 'deb [trusted=yes] {repo} stable main' > sources.list\n\
         O=\"-o Dir::Etc::SourceList=$PWD/sources.list -o Dir::Etc::SourceParts=$PWD/parts \
         -o Dir::State=$PWD/state -o Dir::State::status=$PWD/status -o Dir::Cache=$PWD/cache \
         -o APT::Sandbox::User=root -o Debug::NoLocking=1 -o APT::Architecture=amd64 \
         -o APT::Architectures=amd64\"\n\
         {then}"
    )
}

#[test]
fn apt_downloads_a_deb_over_https_through_capture_and_offline_replay() {
    require("apt-get", &["--version"]);
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    std::fs::create_dir_all(s.path("repo")).unwrap();
    let deb = write_apt_repo(&s.path("repo"));
    let up = FileUpstream::start(&ca, &s.path("repo"));
    let repo = up.url("/");
    let get = "apt-get $O update && apt-get $O download bphello";
    let (code, err) = capture(
        s.dir.path(),
        &ca,
        &["--require-secret", "--store", "store"],
        &apt_script(&repo, "capture", get),
    );
    assert_eq!(code, 0, "capture: {err}");
    assert_eq!(errors_in_summary(&err), 0, "{err}");
    let content = std::fs::read_to_string(s.path("proxy_content.nix")).unwrap();
    assert!(
        content.contains("/by-hash/SHA256/"),
        "apt did not fetch by hash:\n{content}"
    );
    let want = std::fs::read(s.path("repo").join(&deb)).unwrap();
    assert_eq!(
        std::fs::read(s.path("capture/bphello_1.0_amd64.deb")).unwrap(),
        want
    );
    // Release, Packages by hash and the .deb, as Nix fetches them.
    assert!(assert_nix_fetches_every_entry(&s.path("proxy_content.nix"), &ca) >= 3);

    let hits = up.hits.load(Ordering::SeqCst);
    let (code, err) = replay_offline(
        s.dir.path(),
        &["--require-secret", "--strict", "--store", "store"],
        &apt_script(&repo, "replay", get),
    );
    assert_eq!(code, 0, "offline replay: {err}");
    assert_eq!(
        up.hits.load(Ordering::SeqCst),
        hits,
        "replay reached the repository"
    );
    assert_eq!(
        std::fs::read(s.path("replay/bphello_1.0_amd64.deb")).unwrap(),
        want
    );
}

#[test]
fn a_client_that_rejects_the_ca_is_an_error_in_the_summary_naming_host_and_fix() {
    require("apt-get", &["--version"]);
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    std::fs::create_dir_all(s.path("repo")).unwrap();
    write_apt_repo(&s.path("repo"));
    let up = FileUpstream::start(&ca, &s.path("repo"));
    // Without buildproxy's APT_CONFIG, apt trusts only the system's CAs;
    // and it exits 0 all the same.
    let (code, err) = capture(
        s.dir.path(),
        &ca,
        &[],
        &apt_script(
            &up.url("/"),
            "capture",
            "env -u APT_CONFIG apt-get $O update",
        ),
    );
    assert_eq!(code, 0, "{err}");
    assert!(errors_in_summary(&err) >= 1, "{err}");
    let line = err
        .lines()
        .find(|l| l.contains("broke off the TLS handshake"))
        .unwrap_or_else(|| panic!("no handshake error in:\n{err}"));
    assert!(line.contains("connecting to 127.0.0.1"), "{line}");
    assert!(line.contains("APT_CONFIG"), "{line}");
}

/// What npm asks a registry for when it installs: the abbreviated
/// metadata document.
const NPM_INSTALL_JSON: &str = "application/vnd.npm.install-v1+json";

/// An npm registry on `localhost` (npm's proxy agent cannot check an IP
/// address against a certificate) serving one package, `bpnpm` 1.0.0:
/// `/bpnpm` is the abbreviated document for npm's install `Accept` and the
/// full one otherwise (with `Vary: Accept`), as the real registry does;
/// `/bpnpm/-/bpnpm-1.0.0.tgz` is the tarball.
struct NpmRegistry(Served);

impl NpmRegistry {
    fn start(ca: &TestCa, tarball: Vec<u8>) -> Self {
        let tarball = Bytes::from(tarball);
        Self(Served::start(ca, move |r| serve_npm(r, tarball.clone())))
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.0.addr.port())
    }
}

async fn serve_npm(
    req: Request<Incoming>,
    tarball: Bytes,
) -> Result<Response<Full<Bytes>>, Infallible> {
    use base64::Engine as _;
    let mut resp = Response::new(Full::new(Bytes::new()));
    // h2 carries the authority in the URI, HTTP/1.1 in `host`.
    let host = req
        .uri()
        .authority()
        .map(|a| a.to_string())
        .or_else(|| Some(req.headers().get("host")?.to_str().ok()?.to_string()))
        .unwrap_or_else(|| "localhost".into());
    let tgz = format!("https://{host}/bpnpm/-/bpnpm-1.0.0.tgz");
    match req.uri().path() {
        "/bpnpm" => {
            let integrity = format!(
                "sha512-{}",
                base64::engine::general_purpose::STANDARD.encode(sha2::Sha512::digest(&tarball))
            );
            let version = serde_json::json!({
                "name": "bpnpm",
                "version": "1.0.0",
                "dist": { "tarball": tgz, "integrity": integrity },
            });
            let accept = header(&req, "accept");
            let (doc, kind) = if accept.contains(NPM_INSTALL_JSON) {
                (
                    serde_json::json!({
                        "name": "bpnpm",
                        "modified": "2026-01-01T00:00:00.000Z",
                        "dist-tags": { "latest": "1.0.0" },
                        "versions": { "1.0.0": version },
                    }),
                    NPM_INSTALL_JSON,
                )
            } else {
                let mut full = version.clone();
                full["description"] = "a package served by a test registry".into();
                full["readme"] = "# bpnpm\n".into();
                (
                    serde_json::json!({
                        "name": "bpnpm",
                        "description": "a package served by a test registry",
                        "dist-tags": { "latest": "1.0.0" },
                        "time": { "1.0.0": "2026-01-01T00:00:00.000Z" },
                        "versions": { "1.0.0": full },
                    }),
                    "application/json",
                )
            };
            *resp.body_mut() = Full::new(Bytes::from(doc.to_string()));
            let h = resp.headers_mut();
            h.insert("content-type", kind.parse().unwrap());
            h.insert("vary", "Accept, Accept-Encoding".parse().unwrap());
        }
        "/bpnpm/-/bpnpm-1.0.0.tgz" => {
            *resp.body_mut() = Full::new(tarball);
            resp.headers_mut()
                .insert("content-type", "application/octet-stream".parse().unwrap());
        }
        _ => *resp.status_mut() = hyper::StatusCode::NOT_FOUND,
    }
    Ok(resp)
}

#[test]
fn npm_installs_from_a_registry_with_negotiated_metadata_through_capture_replay_and_nix() {
    require("npm", &["--version"]);
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let pkg = s.path("pkg/package");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(
        pkg.join("package.json"),
        r#"{"name": "bpnpm", "version": "1.0.0", "description": "test"}"#,
    )
    .unwrap();
    std::fs::write(pkg.join("index.js"), "module.exports = 42;\n").unwrap();
    let tgz = s.path("bpnpm-1.0.0.tgz");
    let out = tool("tar")
        .current_dir(s.path("pkg"))
        .args(["-czf", tgz.to_str().unwrap(), "package"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let registry = NpmRegistry::start(&ca, std::fs::read(&tgz).unwrap());
    let doc = registry.url("/bpnpm");
    let install = |dir: &str| {
        format!(
            "mkdir -p {dir} && cd {dir} && echo '{{}}' > package.json && \
             npm install --no-audit --no-fund --update-notifier=false --cache ./npm-cache \
             --registry {} bpnpm",
            registry.url("/")
        )
    };
    let (code, err) = capture(
        s.dir.path(),
        &ca,
        &["--require-secret", "--store", "store"],
        &install("one"),
    );
    assert_eq!(code, 0, "capture: {err}");
    let content = s.path("proxy_content.nix");
    let entries = entries_of(&content);
    let meta = entries
        .iter()
        .find(|e| e["url"] == doc)
        .unwrap_or_else(|| panic!("no metadata entry: {entries:#?}"));
    // npm asks for metadata as JSON (`application/json`, or the abbreviated
    // document): an accept curl does not send, so the entry records it.
    let accept = meta["request_headers"]["accept"]
        .as_str()
        .unwrap_or_else(|| panic!("npm's accept is not recorded: {meta:#?}"));

    let hits = registry.0.hits();
    let (code, err) = replay_offline(
        s.dir.path(),
        &["--require-secret", "--strict", "--store", "store"],
        &install("two"),
    );
    assert_eq!(code, 0, "offline replay: {err}");
    assert_eq!(registry.0.hits(), hits, "replay reached the registry");
    assert_eq!(
        std::fs::read(s.path("two/node_modules/bpnpm/index.js")).unwrap(),
        b"module.exports = 42;\n"
    );

    // Nix fetches the document npm got (the abbreviated one when npm asked
    // for it, which curl would not get).
    let fetched = fetch_as_nix_does(&content);
    let file = fetched
        .iter()
        .find(|e| e["url"] == doc)
        .and_then(|e| e["file"].as_str())
        .unwrap();
    let body = std::fs::read(file).unwrap();
    assert_eq!(body, direct_with(&ca, &doc, &[format!("Accept: {accept}")]));
    if accept.contains(NPM_INSTALL_JSON) {
        assert_ne!(body, direct(&ca, &doc));
    }
}

#[test]
fn a_post_that_misses_in_replay_is_said_to_be_unreplayable_with_what_to_do() {
    let r = Registry::new();
    let page = r.index.url("/simple/bpdemo/");
    let (code, err) = capture(
        r.s.dir.path(),
        &r.ca,
        &["--require-secret", "--store", "store"],
        &format!("curl -fsS -o /dev/null {page}"),
    );
    assert_eq!(code, 0, "capture: {err}");
    // What `npm install` sends unless told --no-audit.
    let audit = r.index.url("/-/npm/v1/security/advisories/bulk");
    let (code, err) = replay_offline(
        r.s.dir.path(),
        &["--require-secret", "--store", "store"],
        &format!("curl -sS -X POST -d '{{}}' -o post {audit}; exit 0"),
    );
    assert_eq!(code, 0, "{err}");
    let body = std::fs::read_to_string(r.s.path("post")).unwrap();
    assert!(
        body.contains("cannot be replayed") && body.contains("--no-audit"),
        "{body}"
    );
    assert!(err.contains(&format!("POST {audit}")), "{err}");
    assert!(
        err.contains("cannot be replayed") && err.contains("--no-audit"),
        "{err}"
    );
    assert!(!err.contains("re-run the capture"), "{err}");
}
