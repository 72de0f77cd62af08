//! Body patching and per-project plugins: `--patch RULES.json` on replayed
//! (and captured) bodies, and the example plugin built from its crate and
//! loaded with `--plugin`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};

use crate::support::*;

/// What a project's build downloads: a CMake file that follows branches.
const DEPS: &str = "\
include(FetchContent)
FetchContent_Declare(fmt
  GIT_REPOSITORY https://example.org/fmtlib/fmt.git
  GIT_TAG        main
)
FetchContent_Declare(json
  URL https://example.org/nlohmann/json/archive/refs/heads/main.tar.gz
)
FetchContent_Declare(zlib
  GIT_TAG main
)
";
const UTIL: &str = "function(util)\n  message(STATUS \"util\")\nendfunction()\n";
const TABLE: &str = "id,value\n1,upstream\n";

/// An HTTPS upstream serving fixed files with the validators real servers
/// send (`etag`, `last-modified`), so a test can see them dropped.
struct Files {
    addr: SocketAddr,
    _rt: tokio::runtime::Runtime,
}

impl Files {
    fn start(ca: &TestCa, files: &[(&str, Vec<u8>)]) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let files: Arc<HashMap<String, Bytes>> = Arc::new(
            files
                .iter()
                .map(|(p, b)| (p.to_string(), Bytes::from(b.clone())))
                .collect(),
        );
        let addr = spawn_server(
            &rt,
            Some(ca.server.clone()),
            move |r: Request<hyper::body::Incoming>| {
                let body = files.get(r.uri().path()).cloned();
                async move {
                    let mut resp = Response::new(Full::new(Bytes::new()));
                    match body {
                        Some(b) => {
                            *resp.body_mut() = Full::new(b);
                            let h = resp.headers_mut();
                            h.insert("etag", "\"v1\"".parse().unwrap());
                            h.insert(
                                "last-modified",
                                "Tue, 01 Jan 2030 00:00:00 GMT".parse().unwrap(),
                            );
                            h.insert("content-type", "text/plain".parse().unwrap());
                        }
                        None => *resp.status_mut() = hyper::StatusCode::NOT_FOUND,
                    }
                    Ok::<_, Infallible>(resp)
                }
            },
        );
        Self { addr, _rt: rt }
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }
}

/// One test's world: an upstream of the project's files, captured into a
/// `--store`.
struct Project {
    s: Scratch,
    ca: TestCa,
    files: Files,
}

impl Project {
    fn new() -> Self {
        let s = Scratch::new();
        let ca = TestCa::new(s.dir.path());
        let files = Files::start(
            &ca,
            &[
                ("/proj/cmake/deps.cmake", DEPS.into()),
                ("/proj/cmake/util.cmake", UTIL.into()),
                ("/proj/data/table.txt", TABLE.into()),
                ("/proj/big.bin", payload(1536 << 10, 7)),
            ],
        );
        Self { s, ca, files }
    }

    fn url(&self, path: &str) -> String {
        self.files.url(path)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.s.path(name)
    }

    /// Writes `name` (relative to the scratch dir), creating directories.
    fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// `buildproxy capture --store store … -- sh -c SCRIPT`: (code, stderr).
    fn capture(&self, extra: &[&str], script: &str) -> (i32, String) {
        let out = Command::new(BIN)
            .current_dir(self.s.dir.path())
            .args(["capture", "--proxy-loopback", "--store", "store"])
            .args(["--upstream-ca", self.ca.pem_path.to_str().unwrap()])
            .args(extra)
            .args(["--", "sh", "-c", script])
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Captures a plain download of each path.
    fn capture_all(&self, paths: &[&str]) {
        let script: String = paths
            .iter()
            .map(|p| format!("curl -fsS '{}' -o /dev/null; ", self.url(p)))
            .collect();
        let (code, err) = self.capture(&[], &script);
        assert_eq!(code, 0, "capture failed: {err}");
    }

    /// `buildproxy replay --store store … -- sh -c SCRIPT` in a network
    /// namespace with only loopback: (code, stderr).
    fn replay_offline(&self, extra: &[&str], script: &str) -> (i32, String) {
        let quote = |a: &str| format!("'{}'", a.replace('\'', "'\\''"));
        let mut inner =
            format!("ip link set lo up; exec {BIN} replay --proxy-loopback --store store");
        for a in extra {
            inner.push(' ');
            inner.push_str(&quote(a));
        }
        inner.push_str(&format!(" -- sh -c {}", quote(script)));
        let out = tool("unshare")
            .current_dir(self.s.dir.path())
            .args(["-rn", "sh", "-c", &inner])
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// Response headers curl wrote with `-D FILE`, names lower-case.
    fn headers(&self, name: &str) -> HashMap<String, String> {
        String::from_utf8(self.read(name))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect()
    }

    /// Every file under the store, by content.
    fn stored(&self) -> Vec<Vec<u8>> {
        fn walk(dir: &Path, out: &mut Vec<Vec<u8>>) {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else {
                    out.push(std::fs::read(&p).unwrap());
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.path("store"), &mut out);
        out
    }
}

/// DEPS with fmt and zlib pinned by the literal rule and json's archive by
/// the regex rule.
fn patched_deps() -> String {
    DEPS.replace("GIT_TAG        main", "GIT_TAG        1a2b3c4")
        .replace("GIT_TAG main", "GIT_TAG 1a2b3c4")
        .replace(
            "nlohmann/json/archive/refs/heads/main.tar.gz",
            "nlohmann/json/archive/9f8e7d6.tar.gz",
        )
}

/// The three kinds of rule, plus two that will match nothing.
const RULES: &str = r#"[
  {"url": "cmake/deps\\.cmake$", "find": "GIT_TAG        main", "replace": "GIT_TAG        1a2b3c4"},
  {"url": "cmake/deps\\.cmake$", "find": "GIT_TAG main", "replace": "GIT_TAG 1a2b3c4"},
  {"url": "cmake/deps\\.cmake$", "regex": "(https://example\\.org/[a-z]+/[a-z]+/archive)/refs/heads/main\\.tar\\.gz", "replace": "${1}/9f8e7d6.tar.gz"},
  {"url": "/data/table\\.txt$", "body_file": "patches/table.txt"},
  {"url": "/never/downloaded", "find": "a", "replace": "b"},
  {"url": "cmake/util\\.cmake$", "find": "GIT_TAG v0.0.0", "replace": "GIT_TAG v1"}
]"#;

/// Not UTF-8, so a body file is proven to pass as bytes.
const TABLE_PATCH: &[u8] = b"id,value\n1,patched \xff\xfe\n";

/// The rules in a directory of their own: `body_file` is relative to it,
/// not to where buildproxy runs.
fn with_rules(p: &Project) -> PathBuf {
    p.write("packaging/patches/table.txt", TABLE_PATCH);
    p.write("packaging/rules.json", RULES)
}

#[test]
fn literal_regex_and_body_file_rules_change_replayed_bodies_and_the_store_stays_pristine() {
    let p = Project::new();
    p.capture_all(&[
        "/proj/cmake/deps.cmake",
        "/proj/cmake/util.cmake",
        "/proj/data/table.txt",
    ]);
    let rules = with_rules(&p);
    let (deps, util, table) = (
        p.url("/proj/cmake/deps.cmake"),
        p.url("/proj/cmake/util.cmake"),
        p.url("/proj/data/table.txt"),
    );
    let script = format!(
        "curl -fsS -D deps.h '{deps}' -o deps; curl -fsS -D util.h '{util}' -o util; \
         curl -fsS '{table}' -o table"
    );
    let (code, err) = p.replay_offline(&["--strict", "--patch", rules.to_str().unwrap()], &script);
    assert_eq!(code, 0, "{err}");

    assert_eq!(String::from_utf8(p.read("deps")).unwrap(), patched_deps());
    assert_eq!(p.read("table"), TABLE_PATCH);
    assert_eq!(
        p.read("util"),
        UTIL.as_bytes(),
        "no rule changed util.cmake"
    );

    let h = p.headers("deps.h");
    assert_eq!(h["content-length"], patched_deps().len().to_string());
    assert!(
        !h.contains_key("etag") && !h.contains_key("last-modified"),
        "the validators of the old bytes are dropped: {h:?}"
    );
    let h = p.headers("util.h");
    assert_eq!(
        h.get("etag").map(String::as_str),
        Some("\"v1\""),
        "an unchanged body keeps them"
    );

    let stored = p.stored();
    assert!(
        stored.iter().any(|b| b == DEPS.as_bytes()),
        "the store keeps the upstream bytes"
    );
    assert!(!stored.iter().any(|b| b == patched_deps().as_bytes()));
}

#[test]
fn range_and_head_on_a_patched_body_are_answered_from_the_patched_bytes() {
    let p = Project::new();
    p.capture_all(&["/proj/cmake/deps.cmake"]);
    let rules = with_rules(&p);
    let deps = p.url("/proj/cmake/deps.cmake");
    let script = format!(
        "curl -fsS -D range.h -r 100-159 '{deps}' -o range; curl -fsS -r -20 '{deps}' -o tail; \
         curl -fsS -I '{deps}' > head.h"
    );
    let (code, err) = p.replay_offline(&["--patch", rules.to_str().unwrap()], &script);
    assert_eq!(code, 0, "{err}");
    let patched = patched_deps().into_bytes();
    assert_ne!(
        &patched[100..160],
        &DEPS.as_bytes()[100..160],
        "the span differs once patched"
    );
    assert_eq!(p.read("range"), &patched[100..160]);
    assert_eq!(p.read("tail"), &patched[patched.len() - 20..]);
    let h = p.headers("range.h");
    assert_eq!(
        h["content-range"],
        format!("bytes 100-159/{}", patched.len())
    );
    assert_eq!(h["content-length"], "60");
    let h = p.headers("head.h");
    assert_eq!(h["content-length"], patched.len().to_string());
}

#[test]
fn a_rule_that_matched_nothing_is_reported_at_exit_with_the_reason() {
    let p = Project::new();
    p.capture_all(&["/proj/cmake/deps.cmake", "/proj/cmake/util.cmake"]);
    let rules = with_rules(&p);
    let script = format!(
        "curl -fsS '{}' -o /dev/null; curl -fsS '{}' -o /dev/null",
        p.url("/proj/cmake/deps.cmake"),
        p.url("/proj/cmake/util.cmake")
    );
    let (code, err) = p.replay_offline(&["--patch", rules.to_str().unwrap()], &script);
    assert_eq!(code, 0, "{err}");
    let rules = rules.display();
    assert!(
        err.contains("buildproxy: patch: patched 1 responses; 3 of 6 rules applied"),
        "{err}"
    );
    // table.txt was not downloaded this run: its rule is reported too.
    assert!(
        err.contains(&format!(
            "buildproxy: patch: {rules}: rule #4 (url \"/data/table\\\\.txt$\") matched nothing: no response's URL matched"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{rules}: rule #5 (url \"/never/downloaded\") matched nothing"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{rules}: rule #6 (url \"cmake/util\\\\.cmake$\") matched nothing: its URL matched 1 response(s), but the text \"GIT_TAG v0.0.0\" occurred in none"
        )),
        "{err}"
    );
    assert!(!err.contains("rule #1 "), "rule 1 applied: {err}");
}

#[test]
fn a_body_over_the_plugin_body_limit_is_a_502_naming_the_url_and_the_flag() {
    let p = Project::new();
    p.capture_all(&["/proj/big.bin", "/proj/cmake/deps.cmake"]);
    let rules = p.write(
        "rules.json",
        r#"[{"url": "\\.(bin|cmake)$", "find": "GIT_TAG main", "replace": "GIT_TAG 1a2b3c4"}]"#,
    );
    let big = p.url("/proj/big.bin");
    let script = format!(
        "curl -sS -o big -w '%{{http_code}}' '{big}' > big.status; \
         curl -fsS '{}' -o deps",
        p.url("/proj/cmake/deps.cmake")
    );
    let (code, err) = p.replay_offline(
        &[
            "--patch",
            rules.to_str().unwrap(),
            "--plugin-body-limit-mib",
            "1",
        ],
        &script,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(String::from_utf8(p.read("big.status")).unwrap(), "502");
    let body = String::from_utf8_lossy(&p.read("big")).into_owned();
    assert!(body.contains(&big), "the 502 names the URL: {body}");
    assert!(
        body.contains("plugin body limit of 1 MiB") && body.contains("--plugin-body-limit-mib"),
        "the 502 says what to change: {body}"
    );
    assert!(
        String::from_utf8(p.read("deps"))
            .unwrap()
            .contains("GIT_TAG 1a2b3c4"),
        "a body under the limit is still patched"
    );
}

#[test]
fn bad_rules_stop_the_proxy_at_start_naming_the_file_the_rule_and_the_fix() {
    let p = Project::new();
    for (rules, expect) in [
        (
            r#"[{"url": "a", "find": "x", "replace": "y"}, {"url": "deps(", "find": "x", "replace": "y"}]"#,
            vec!["rule #2 (url \"deps(\")", "\"url\" is not a valid regex"],
        ),
        (
            r#"[{"url": "a", "body_file": "missing/deps.cmake"}]"#,
            vec![
                "rule #1: cannot read its body_file",
                "missing/deps.cmake",
                "relative to the directory",
            ],
        ),
        (
            r#"[{"url": "a", "find": "x", "replace": "y", "replace_all": true}]"#,
            vec!["rule #1 (url \"a\")", "unknown key \"replace_all\""],
        ),
        (
            r#"[{"url": "a", "regex": "GIT_TAG (main)", "replace": "$1abc"}]"#,
            vec!["refers to $1abc", "${1}text"],
        ),
    ] {
        let path = p.write("bad-rules.json", rules);
        let out = Command::new(BIN)
            .args(["proxy", "--patch", path.to_str().unwrap(), "--", "true"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{rules}: {err}");
        assert!(
            err.contains(&path.display().to_string()),
            "names the file: {err}"
        );
        for e in expect {
            assert!(err.contains(e), "{rules}: expected {e:?} in {err}");
        }
        assert!(
            !err.contains("[{\"source\""),
            "the generated config is not dumped: {err}"
        );
    }
}

#[test]
fn capture_with_patch_records_hashes_of_the_unpatched_bodies_and_says_so() {
    let p = Project::new();
    let rules = with_rules(&p);
    let deps = p.url("/proj/cmake/deps.cmake");
    let (code, err) = p.capture(
        &["--patch", rules.to_str().unwrap()],
        &format!("curl -fsS -D deps.h '{deps}' -o deps"),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        String::from_utf8(p.read("deps")).unwrap(),
        patched_deps(),
        "the client got the patched body"
    );
    assert!(err.contains("hashes are of the unpatched bodies"), "{err}");
    let content = String::from_utf8(p.read("proxy_content.nix")).unwrap();
    assert!(content.contains(&sri(DEPS.as_bytes())), "{content}");
    assert!(
        !content.contains(&sri(patched_deps().as_bytes())),
        "{content}"
    );
    assert!(
        content.contains("etag"),
        "the entry keeps the upstream's validators, which describe its bytes: {content}"
    );
    assert!(p.stored().iter().any(|b| b == DEPS.as_bytes()));
}

/// Builds example/plugin the way its README says: cargo for wasm32, then
/// `buildproxy component`. The cargo target dir is under the shared one, so
/// a second run only links.
fn build_example_plugin(out: &Path) {
    let target = Path::new(BIN)
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("example-plugin");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../example/plugin/Cargo.toml");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--offline",
            "--release",
            "--target",
            "wasm32-unknown-unknown",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .unwrap();
    assert!(
        status.success(),
        "building example/plugin failed (see above)"
    );
    let module = target.join("wasm32-unknown-unknown/release/pin_cmake_deps.wasm");
    let built = Command::new(BIN)
        .arg("component")
        .arg(&module)
        .arg(out)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "buildproxy component: {}",
        String::from_utf8_lossy(&built.stderr)
    );
}

#[test]
fn the_example_plugin_builds_from_its_crate_and_pins_a_replayed_cmake_file() {
    let p = Project::new();
    p.capture_all(&["/proj/cmake/deps.cmake"]);
    let plugin = p.path("pin-cmake-deps.wasm");
    build_example_plugin(&plugin);
    let arg = format!("{}=fmt=1a2b3c4,json=9f8e7d6", plugin.display());
    let deps = p.url("/proj/cmake/deps.cmake");
    let (code, err) = p.replay_offline(
        &["--strict", "--plugin", &arg],
        &format!("curl -fsS '{deps}' -o deps"),
    );
    assert_eq!(code, 0, "{err}");
    let got = String::from_utf8(p.read("deps")).unwrap();
    assert!(got.contains("GIT_TAG        1a2b3c4\n"), "{got}");
    assert!(
        got.contains("nlohmann/json/archive/9f8e7d6.tar.gz"),
        "{got}"
    );
    assert!(
        got.contains("FetchContent_Declare(zlib\n  GIT_TAG main\n)"),
        "zlib is not pinned: {got}"
    );
    assert!(
        err.contains("buildproxy: pin-cmake-deps: pinned fmt to 1a2b3c4 in 1 download(s)"),
        "its report: {err}"
    );
}
