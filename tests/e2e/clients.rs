//! Real clients through capture and offline replay, each given nothing but
//! the environment buildproxy exports: the same download is made through
//! `buildproxy capture`, then through `buildproxy replay --strict` in a
//! network namespace with only loopback (`unshare -rn`), and both results
//! must equal a direct download. README's compatibility table cites these
//! tests.
//!
//! A client missing from the machine fails its test with the Debian package
//! that `tests/run.sh` installs for it: a skipped client would leave the table
//! unproven.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::*;

/// Panics unless `program args…` runs: the client must be installed.
pub(crate) fn require(program: &str, args: &[&str]) {
    let ok = tool(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "`{program} {}` does not run: {}",
        args.join(" "),
        missing_tool(program)
    );
}

/// pip is a Python module, not a program of its own.
pub(crate) fn require_pip() {
    require("python3", &["--version"]);
    let ok = tool("python3")
        .args(["-m", "pip", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "`python3 -m pip` does not run: apt-get install python3-pip \
         (tests/run.sh installs everything the tests need)"
    );
}

/// One client's round trip: a scratch directory with `www/` served by a
/// [`FileUpstream`], and one working directory per phase.
struct Trip {
    s: Scratch,
    ca: TestCa,
    up: FileUpstream,
    /// The user's own environment, which buildproxy must combine with its own.
    user_env: Vec<(String, String)>,
    /// `--require-secret`: the client must send the run's credentials from
    /// the exported proxy URL (every client but the JVM can).
    require_secret: bool,
}

impl Trip {
    fn new() -> Self {
        let s = Scratch::new();
        let ca = TestCa::new(s.dir.path());
        std::fs::create_dir_all(s.path("www")).unwrap();
        let up = FileUpstream::start(&ca, &s.path("www"));
        Self {
            s,
            ca,
            up,
            user_env: Vec::new(),
            require_secret: true,
        }
    }

    fn www(&self, rel: &str) -> PathBuf {
        self.s.path("www").join(rel)
    }

    /// A clean environment: PATH, a fresh HOME (no user config of any
    /// client leaks in), and what toolchain shims need to find themselves.
    fn base_env(&self, phase: &str) -> Vec<(String, String)> {
        let home = self.s.path(&format!("home-{phase}"));
        std::fs::create_dir_all(&home).unwrap();
        let real_home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        let mut env = vec![
            ("PATH".to_string(), std::env::var("PATH").unwrap()),
            ("HOME".to_string(), home.display().to_string()),
        ];
        for (k, default) in [("PYENV_ROOT", ".pyenv"), ("RUSTUP_HOME", ".rustup")] {
            let default = Path::new(&real_home).join(default);
            match std::env::var(k) {
                Ok(v) => env.push((k.to_string(), v)),
                Err(_) if default.is_dir() => {
                    env.push((k.to_string(), default.display().to_string()))
                }
                Err(_) => {}
            }
        }
        env.extend(self.user_env.iter().cloned());
        env
    }

    /// `buildproxy capture -- sh -c SCRIPT` in `capture/`; panics unless the
    /// script succeeded; returns buildproxy's stderr.
    fn capture(&self, script: &str) -> String {
        let dir = self.s.path("capture");
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new(BIN)
            .current_dir(&dir)
            .env_clear()
            .envs(self.base_env("capture"))
            .args(["capture", "--proxy-loopback", "--upstream-ca"])
            .arg(&self.ca.pem_path)
            .args(self.require_secret.then_some("--require-secret"))
            .args(["--output"])
            .arg(self.s.path("proxy_content.nix"))
            .args(["--store"])
            .arg(self.s.path("store"))
            .args(["--", "sh", "-c", script])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "capture of `{script}` failed:\n{err}");
        err
    }

    /// `buildproxy replay --strict -- sh -c SCRIPT` in `replay/`, inside a
    /// network namespace with only loopback.
    fn replay_offline(&self, script: &str) -> Output {
        let dir = self.s.path("replay");
        std::fs::create_dir_all(&dir).unwrap();
        let inner = format!(
            "ip link set lo up && exec {BIN} replay --proxy-loopback --strict {}--store {} -- sh -c {}",
            if self.require_secret {
                "--require-secret "
            } else {
                ""
            },
            quote(&self.s.path("store").display().to_string()),
            quote(script),
        );
        tool("unshare")
            .current_dir(&dir)
            .env_clear()
            .envs(self.base_env("replay"))
            .args(["-rn", "sh", "-c", &inner])
            .output()
            .unwrap()
    }

    /// Captures, then replays offline, the same script; panics unless both
    /// succeeded and the capture recorded `url`.
    fn round_trip(&self, script: &str, url: &str) {
        self.capture(script);
        let content = std::fs::read_to_string(self.s.path("proxy_content.nix")).unwrap();
        assert!(
            content.contains(url),
            "the capture did not record {url}: the client bypassed the proxy?\n{content}"
        );
        let hits = self.up.hits.load(std::sync::atomic::Ordering::SeqCst);
        let out = self.replay_offline(script);
        assert!(
            out.status.success(),
            "offline replay of `{script}` failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            self.up.hits.load(std::sync::atomic::Ordering::SeqCst),
            hits,
            "replay reached the upstream"
        );
    }

    fn got(&self, phase: &str, rel: &str) -> Vec<u8> {
        let p = self.s.path(phase).join(rel);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// The file `rel` each phase wrote equals a direct download of `url`.
    fn assert_same_as_direct(&self, rel: &str, url: &str) {
        let want = direct(&self.ca, url);
        assert!(!want.is_empty());
        for phase in ["capture", "replay"] {
            assert!(
                self.got(phase, rel) == want,
                "{phase}/{rel} differs from a direct download of {url}"
            );
        }
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn run(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn curl_downloads_through_capture_and_offline_replay() {
    require("curl", &["--version"]);
    let t = Trip::new();
    std::fs::write(t.www("blob.bin"), payload(300_000, 1)).unwrap();
    let url = t.up.url("/blob.bin");
    t.round_trip(&format!("curl -fsS -o got {url}"), &url);
    t.assert_same_as_direct("got", &url);
}

#[test]
fn wget_downloads_through_capture_and_offline_replay_with_its_wgetrc() {
    require("wget", &["--version"]);
    let mut t = Trip::new();
    // A user's WGETRC is kept: its `output_document` still applies.
    let user_rc = t.s.path("user-wgetrc");
    std::fs::write(&user_rc, "output_document = got\n").unwrap();
    t.user_env
        .push(("WGETRC".into(), user_rc.display().to_string()));
    std::fs::write(t.www("blob.bin"), payload(300_000, 2)).unwrap();
    let url = t.up.url("/blob.bin");
    t.round_trip(&format!("wget -q {url}"), &url);
    t.assert_same_as_direct("got", &url);
}

#[test]
fn python_urllib_downloads_through_capture_and_offline_replay() {
    require("python3", &["--version"]);
    let t = Trip::new();
    std::fs::write(t.www("blob.bin"), payload(300_000, 3)).unwrap();
    let url = t.up.url("/blob.bin");
    let script = format!(
        "python3 -c 'import sys, urllib.request; \
         open(\"got\", \"wb\").write(urllib.request.urlopen(sys.argv[1]).read())' {url}"
    );
    t.round_trip(&script, &url);
    t.assert_same_as_direct("got", &url);
}

#[test]
fn pip_downloads_a_wheel_url_through_capture_and_offline_replay() {
    require_pip();
    let t = Trip::new();
    let wheel = "bpdemo-1.0-py3-none-any.whl";
    write_wheel(&t.www(wheel), "bpdemo", 0);
    let url = t.up.url(&format!("/{wheel}"));
    t.round_trip(
        &format!(
            "python3 -m pip download --no-cache-dir --no-deps --no-index \
             --disable-pip-version-check --dest . {url}"
        ),
        &url,
    );
    t.assert_same_as_direct(wheel, &url);
}

/// A bare repository with one commit, prepared for the dumb protocol.
/// Returns the commit id.
fn write_repo(bare: &Path, readme: &[u8]) -> String {
    let work = bare.with_extension("work");
    std::fs::create_dir_all(&work).unwrap();
    run(&work, "git", &["init", "-q", "-b", "main"]);
    std::fs::write(work.join("README"), readme).unwrap();
    run(&work, "git", &["add", "README"]);
    run(
        &work,
        "git",
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.org",
            "commit",
            "-qm",
            "one",
        ],
    );
    run(
        &work,
        "git",
        &["clone", "-q", "--bare", ".", bare.to_str().unwrap()],
    );
    run(bare, "git", &["update-server-info"]);
    run(&work, "git", &["rev-parse", "HEAD"]).trim().to_string()
}

#[test]
fn git_clones_over_dumb_https_through_capture_and_offline_replay() {
    require("git", &["--version"]);
    let t = Trip::new();
    let readme = payload(50_000, 4);
    let commit = write_repo(&t.www("repo.git"), &readme);
    let url = t.up.url("/repo.git");
    t.round_trip(
        &format!("GIT_CONFIG_NOSYSTEM=1 git clone -q {url} got"),
        &url,
    );
    for phase in ["capture", "replay"] {
        let clone = t.s.path(phase).join("got");
        assert_eq!(
            run(&clone, "git", &["rev-parse", "HEAD"]).trim(),
            commit,
            "{phase}"
        );
        assert!(
            t.got(phase, "got/README") == readme,
            "{phase}: README differs"
        );
    }
}

/// A JVM as Gradle and Maven use it: `HttpURLConnection`, with the user's
/// own `JAVA_TOOL_OPTIONS` still applied.
#[test]
fn java_http_url_connection_downloads_through_capture_and_offline_replay() {
    require("java", &["-version"]);
    let mut t = Trip::new();
    // A JVM takes proxy credentials only from code (an Authenticator), and
    // prints JAVA_TOOL_OPTIONS to the log: it is admitted by its uid.
    t.require_secret = false;
    t.user_env.push((
        "JAVA_TOOL_OPTIONS".into(),
        "-Dbuildproxy.test.user=kept".into(),
    ));
    let src = t.s.path("Get.java");
    std::fs::write(
        &src,
        r#"
import java.io.InputStream;
import java.net.HttpURLConnection;
import java.net.URL;
import java.nio.file.*;

public class Get {
    public static void main(String[] args) throws Exception {
        HttpURLConnection c = (HttpURLConnection) new URL(args[0]).openConnection();
        try (InputStream in = c.getInputStream()) {
            Files.copy(in, Paths.get("got"), StandardCopyOption.REPLACE_EXISTING);
        }
        if (!c.usingProxy()) throw new IllegalStateException("not proxied");
        Files.writeString(Paths.get("user-option"), System.getProperty("buildproxy.test.user", "lost"));
    }
}
"#,
    )
    .unwrap();
    std::fs::write(t.www("blob.bin"), payload(300_000, 6)).unwrap();
    let url = t.up.url("/blob.bin");
    t.round_trip(&format!("java {} {url}", src.display()), &url);
    t.assert_same_as_direct("got", &url);
    for phase in ["capture", "replay"] {
        assert_eq!(
            t.got(phase, "user-option"),
            b"kept",
            "{phase}: the user's JAVA_TOOL_OPTIONS"
        );
    }
}

/// `java.net.http.HttpClient` (what newer Gradle and the Maven resolver's
/// native transport use) reads the same system properties: the proxy from
/// `ProxySelector.getDefault()`, trust from the default SSLContext.
#[test]
fn java_net_http_client_downloads_through_capture_and_offline_replay() {
    require("java", &["-version"]);
    let mut t = Trip::new();
    // As for HttpURLConnection: admitted by its uid.
    t.require_secret = false;
    let src = t.s.path("Fetch.java");
    std::fs::write(
        &src,
        r#"
import java.net.ProxySelector;
import java.net.URI;
import java.net.http.*;
import java.nio.file.*;

public class Fetch {
    public static void main(String[] args) throws Exception {
        HttpClient client = HttpClient.newBuilder()
            .proxy(ProxySelector.getDefault())
            .build();
        HttpResponse<Path> r = client.send(
            HttpRequest.newBuilder(URI.create(args[0])).build(),
            HttpResponse.BodyHandlers.ofFile(Paths.get("got")));
        if (r.statusCode() != 200) throw new IllegalStateException("status " + r.statusCode());
    }
}
"#,
    )
    .unwrap();
    std::fs::write(t.www("module.jar"), payload(200_000, 16)).unwrap();
    let url = t.up.url("/module.jar");
    t.round_trip(&format!("java {} {url}", src.display()), &url);
    t.assert_same_as_direct("got", &url);
}

/// npm fetches a tarball URL. The URL names `localhost`: npm's proxy agent
/// checks an IP-address URL's certificate against the name "localhost"
/// (a client bug, whatever the proxy).
#[test]
fn npm_packs_a_tarball_url_through_capture_and_offline_replay() {
    require("npm", &["--version"]);
    let t = Trip::new();
    let pkg = t.s.path("pkg/package");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(
        pkg.join("package.json"),
        r#"{"name": "bpdemo", "version": "1.0.0", "description": "test"}"#,
    )
    .unwrap();
    std::fs::write(pkg.join("index.js"), "module.exports = 42;\n").unwrap();
    run(
        &t.s.path("pkg"),
        "tar",
        &[
            "-czf",
            t.www("bpdemo-1.0.0.tgz").to_str().unwrap(),
            "package",
        ],
    );
    let url = t.up.named_url("/bpdemo-1.0.0.tgz");
    t.round_trip(
        &format!("npm pack --silent --cache ./npm-cache --update-notifier=false {url}"),
        &url,
    );
    t.assert_same_as_direct("bpdemo-1.0.0.tgz", &url);
}

#[test]
fn cmake_file_download_with_tls_verify_through_capture_and_offline_replay() {
    require("cmake", &["--version"]);
    let t = Trip::new();
    std::fs::write(t.www("blob.bin"), payload(300_000, 7)).unwrap();
    let url = t.up.url("/blob.bin");
    let script = t.s.path("download.cmake");
    std::fs::write(
        &script,
        format!(
            "file(DOWNLOAD \"{url}\" \"${{CMAKE_CURRENT_BINARY_DIR}}/got\" TLS_VERIFY ON STATUS st)\n\
             list(GET st 0 code)\n\
             if(NOT code EQUAL 0)\n  message(FATAL_ERROR \"download failed: ${{st}}\")\nendif()\n"
        ),
    )
    .unwrap();
    t.round_trip(&format!("cmake -P {}", script.display()), &url);
    t.assert_same_as_direct("got", &url);
}

/// A sparse registry with one crate, served by the upstream: `cargo fetch`
/// reads its config, its index file and the crate.
#[test]
fn cargo_fetches_from_a_sparse_registry_through_capture_and_offline_replay() {
    let cargo = env!("CARGO");
    let t = Trip::new();
    let krate = t.s.path("crate/bpdemo-1.0.0");
    std::fs::create_dir_all(krate.join("src")).unwrap();
    std::fs::write(
        krate.join("Cargo.toml"),
        "[package]\nname = \"bpdemo\"\nversion = \"1.0.0\"\nedition = \"2021\"\n",
    )
    .unwrap();
    std::fs::write(krate.join("src/lib.rs"), "pub const VALUE: u32 = 42;\n").unwrap();
    let dl = t.www("registry/dl/bpdemo/1.0.0/download");
    std::fs::create_dir_all(dl.parent().unwrap()).unwrap();
    run(
        &t.s.path("crate"),
        "tar",
        &["-czf", dl.to_str().unwrap(), "bpdemo-1.0.0"],
    );
    let cksum: String = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(
        std::fs::read(&dl).unwrap(),
    ))
    .iter()
    .map(|b| format!("{b:02x}"))
    .collect();
    let registry = t.up.url("/registry/");
    std::fs::write(
        t.www("registry/config.json"),
        format!(r#"{{"dl": "{registry}dl/{{crate}}/{{version}}/download"}}"#),
    )
    .unwrap();
    std::fs::create_dir_all(t.www("registry/bp/de")).unwrap();
    std::fs::write(
        t.www("registry/bp/de/bpdemo"),
        format!(
            r#"{{"name":"bpdemo","vers":"1.0.0","deps":[],"cksum":"{cksum}","features":{{}},"yanked":false}}"#
        ) + "\n",
    )
    .unwrap();
    for phase in ["capture", "replay"] {
        let project = t.s.path(phase);
        std::fs::create_dir_all(project.join("src")).unwrap();
        std::fs::create_dir_all(project.join(".cargo")).unwrap();
        std::fs::write(
            project.join("Cargo.toml"),
            "[package]\nname = \"consumer\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\
             [dependencies]\nbpdemo = { version = \"1.0.0\", registry = \"local\" }\n",
        )
        .unwrap();
        std::fs::write(project.join("src/lib.rs"), "").unwrap();
        std::fs::write(
            project.join(".cargo/config.toml"),
            format!("[registries.local]\nindex = \"sparse+{registry}\"\n"),
        )
        .unwrap();
    }
    let rustc = Path::new(cargo).with_file_name("rustc");
    let crate_url = t.up.url("/registry/dl/bpdemo/1.0.0/download");
    t.round_trip(
        &format!(
            "CARGO_HOME=$PWD/cargo-home RUSTC={} {cargo} fetch -q && \
             cp cargo-home/registry/cache/*/bpdemo-1.0.0.crate got",
            rustc.display()
        ),
        &crate_url,
    );
    t.assert_same_as_direct("got", &crate_url);
    // The index files and the crate, as Nix fetches them.
    let content = t.s.path("proxy_content.nix");
    assert!(crate::registries::assert_nix_fetches_every_entry(&content, &t.ca) >= 2);
}

/// Plain HTTP (absolute-form requests, no CONNECT): each client that reads
/// the proxy variables sends the credentials in the exported URL, so it is
/// served under `--require-secret`; the CONNECT case is every round trip
/// above. A refused client would not reach the upstream.
#[test]
fn clients_send_the_runs_credentials_on_plain_http_requests() {
    for program in ["curl", "wget", "python3", "git", "npm"] {
        require(program, &["--version"]);
    }
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    let proxy = Running::start(&["proxy", "--proxy-loopback", "--require-secret"]);
    let url = |client: &str| up.http_url(&format!("/bytes/100?{client}"));
    let cases = [
        ("curl", format!("curl -sSf -o /dev/null '{}'", url("curl"))),
        ("wget", format!("wget -q -O /dev/null '{}'", url("wget"))),
        (
            "python",
            format!(
                "python3 -c 'import urllib.request,sys; urllib.request.urlopen(sys.argv[1]).read()' '{}'",
                url("python")
            ),
        ),
        // A 404 from the upstream, after the proxy let it through.
        ("git", format!("git ls-remote '{}' || true", url("git"))),
        (
            "npm",
            format!(
                "npm pack --silent --cache ./npm-cache --update-notifier=false '{}' || true",
                url("npm")
            ),
        ),
    ];
    let home = s.path("home");
    std::fs::create_dir_all(&home).unwrap();
    for (client, script) in cases {
        let before = up.hits();
        let out = Command::new("sh")
            .current_dir(s.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .env("HOME", &home)
            .envs(proxy.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(
            up.hits() > before,
            "{client} was refused (no credentials sent?): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
