//! Nix integration with the real Nix: the library in `nix/` evaluated
//! against stand-ins, its replay script sourced by a sandboxed `nix-build`
//! that downloads what `capture` recorded (and cannot reach the network),
//! the script's life cycle in a plain shell, and the flake's wiring.
//!
//! nixpkgs is not needed: `tests/nix/stand-ins.nix` rebuilds the few
//! functions the library takes from `builtins.derivation` and
//! `<nix/fetchurl.nix>`, and wraps the cargo-built binary as the package
//! would. Without Nix these tests fail naming the package (tests/run.sh
//! installs Debian's nix-bin). Nix runs as Debian ships it: see [`nix_tool`].

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::support::*;

/// Builds like a NixOS builder on Debian's nix-bin (root, no daemon): the
/// sandbox on (private network namespace with only loopback, no PATH, no
/// HOME), the host's /bin, /usr and libraries visible so the builder can
/// run /bin/bash, /usr/bin/curl and the dynamically linked buildproxy.
pub(crate) const SANDBOX: &[&str] = &[
    "--option",
    "sandbox",
    "true",
    "--option",
    "sandbox-paths",
    "/bin /usr /lib /lib64",
    "--option",
    "substituters",
    "",
];

pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub(crate) fn fixture(name: &str) -> String {
    repo().join("tests/nix").join(name).display().to_string()
}

/// Runs a Nix tool as Debian ships it ([`nix_tool`]); a missing Nix is a
/// failure that names the package.
pub(crate) fn nix(tool: &str, args: &[&str]) -> Output {
    nix_tool(tool).args(args).output().unwrap()
}

/// [`nix`], and it must succeed; returns stdout.
pub(crate) fn nix_ok(tool: &str, args: &[&str]) -> String {
    let out = nix(tool, args);
    assert!(
        out.status.success(),
        "{tool} {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `nix-build --no-out-link` in the sandbox; returns the output paths.
pub(crate) fn nix_build(args: &[&str]) -> Vec<PathBuf> {
    let mut all = vec!["--no-out-link"];
    all.extend_from_slice(SANDBOX);
    all.extend_from_slice(args);
    nix_ok("nix-build", &all)
        .lines()
        .map(PathBuf::from)
        .collect()
}

/// Evaluates `{ case = { got; want; }; … }` (attribute `attr` of `file`)
/// and fails listing every case whose `got` differs from its `want`.
fn assert_cases(file: &str, attr: &str, at_least: usize) {
    let mut args = vec!["--eval", "--strict", "--json", "--read-write-mode"];
    if !attr.is_empty() {
        args.extend(["-A", attr]);
    }
    args.push(file);
    let out = nix_ok("nix-instantiate", &args);
    let cases: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert!(
        cases.len() >= at_least,
        "{file}: expected at least {at_least} cases, got {}",
        cases.len()
    );
    let failed: Vec<String> = cases
        .iter()
        .filter(|(_, c)| c["got"] != c["want"])
        .map(|(name, c)| format!("{name}:\n  got:  {}\n  want: {}", c["got"], c["want"]))
        .collect();
    assert!(failed.is_empty(), "{file}:\n{}", failed.join("\n"));
}

/// `s` as one POSIX shell word.
pub(crate) fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[test]
fn nix_library_turns_content_into_replay_json_and_scripts() {
    assert_cases(&fixture("eval.nix"), "", 14);
}

#[test]
fn nix_library_mistakes_name_the_entry_and_the_fix() {
    let lib = format!(
        "import {} (import {} {{ }})",
        repo().join("nix").display(),
        fixture("stand-ins.nix")
    );
    for (expr, message) in [
        (
            "importContent [ { file = null; } ]",
            "entry [0] has no `url`; add the URL the build requested",
        ),
        (
            "importContent [ { url = \"https://example.org/a\"; } ]",
            "entry [0] (https://example.org/a) has no `file`",
        ),
        (
            "importContent ({ fetchurl }: { })",
            "is not a list of entries",
        ),
        (
            "(mkBuildproxy { content = [ ]; plugin = [ ]; }).drvPath",
            "mkBuildproxy does not take `plugin`",
        ),
        (
            "(mkBuildproxy { strict = true; }).drvPath",
            "mkBuildproxy needs `content`",
        ),
    ] {
        let full = format!("with {lib}; {expr}");
        let out = nix("nix-instantiate", &["--eval", "--strict", "-E", &full]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{expr} evaluated");
        assert!(err.contains(message), "{expr}: {err}");
    }
}

#[test]
fn sandboxed_nix_build_replays_captured_downloads_with_no_network() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    let bytes_1000 = up.https_url("/bytes/1000");
    let redirect = up.https_url("/redirect?to=/bytes/1000");
    // (file in $out, curl arguments, the URL whose plain bytes it must hold)
    let requests: Vec<(&str, Vec<String>, String)> = vec![
        ("plain", vec![bytes_1000.clone()], bytes_1000.clone()),
        (
            "query",
            vec![up.https_url("/bytes/2500?v=1.0&arch=x86_64")],
            up.https_url("/bytes/2500?v=1.0&arch=x86_64"),
        ),
        (
            "http",
            vec![up.http_url("/bytes/3000")],
            up.http_url("/bytes/3000"),
        ),
        (
            "gzip",
            vec!["--compressed".into(), up.https_url("/gzip")],
            up.https_url("/gzip"),
        ),
        (
            "redirect",
            vec!["--location".into(), redirect.clone()],
            bytes_1000.clone(),
        ),
    ];

    // Capture, as a packager would (with network).
    let script: Vec<String> = requests
        .iter()
        .map(|(_, args, _)| {
            let args: Vec<String> = args.iter().map(|a| sh_quote(a)).collect();
            format!("curl -sS --fail -o /dev/null {}", args.join(" "))
        })
        .collect();
    let out = Command::new(BIN)
        .current_dir(s.dir.path())
        .args(["capture", "--proxy-loopback", "--upstream-ca"])
        .arg(&ca.pem_path)
        .args(["--", "sh", "-ec", &script.join("\n")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "capture: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let content = s.path("proxy_content.nix");
    let text = std::fs::read_to_string(&content).unwrap();
    assert!(text.contains("status_code = 302;"), "{text}");

    let json = |requests: &[(&str, Vec<String>, String)]| {
        serde_json::to_string(
            &requests
                .iter()
                .map(|(name, args, _)| serde_json::json!({ "name": name, "args": args }))
                .collect::<Vec<_>>(),
        )
        .unwrap()
    };
    let build = |content: &Path, requests: &[(&str, Vec<String>, String)], attr: &str| {
        let requests = json(requests);
        let file = fixture("sandboxed-replay.nix");
        nix_build(&[
            &file,
            "-A",
            attr,
            "--argstr",
            "binary",
            BIN,
            "--argstr",
            "content",
            content.to_str().unwrap(),
            "--argstr",
            "requests",
            &requests,
            "--argstr",
            "direct",
            &bytes_1000,
        ])
        .remove(0)
    };
    // Nix fetches the bodies (fixed-output derivations, with network) …
    build(&content, &requests, "content");
    let hits = up.hits();
    // … and the build that downloads them runs in the sandbox.
    let out = build(&content, &requests, "replay");
    assert_eq!(up.hits(), hits, "the sandboxed build reached the upstream");
    for (name, _, url) in &requests {
        let got = std::fs::read(out.join(name)).unwrap();
        assert_eq!(got, direct(&ca, url), "{name}: {url}");
    }
    let addr = std::fs::read_to_string(out.join("proxy-address")).unwrap();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    let direct_attempt = std::fs::read_to_string(out.join("direct")).unwrap();
    assert_eq!(
        direct_attempt.trim(),
        "curl exit 7",
        "a direct connection from the sandbox must fail to connect: {}",
        std::fs::read_to_string(out.join("direct.stderr")).unwrap()
    );

    // A proxy_content.nix as nix-buildproxy writes it (no method, no
    // status or headers on bodies, a capitalised Location) works unchanged.
    let legacy = s.path("nix-buildproxy.nix");
    std::fs::write(
        &legacy,
        format!(
            "{{ fetchurl }}:\n[\n  {{\n    url = \"{redirect}\";\n    status_code = 302;\n    \
             headers = {{ Location = \"/bytes/1000\"; }};\n    file = null;\n  }}\n  {{\n    \
             url = \"{bytes_1000}\";\n    file = fetchurl {{\n      url = \"{bytes_1000}\";\n      \
             hash = \"{}\";\n    }};\n  }}\n]\n",
            sri(&direct(&ca, &bytes_1000))
        ),
    )
    .unwrap();
    let hits = up.hits();
    let out = build(&legacy, &requests[4..], "replay");
    assert_eq!(up.hits(), hits, "the sandboxed build reached the upstream");
    assert_eq!(
        std::fs::read(out.join("redirect")).unwrap(),
        direct(&ca, &bytes_1000)
    );
}

/// The scripts of tests/nix/scripts.nix, built with the cargo binary.
struct Scripts {
    script: PathBuf,
    patched: PathBuf,
    broken: PathBuf,
    shell: PathBuf,
}

fn scripts() -> Scripts {
    let file = fixture("scripts.nix");
    let mut paths = nix_build(&[
        &file, "--argstr", "binary", BIN, "-A", "script", "-A", "patched", "-A", "broken", "-A",
        "shell",
    ])
    .into_iter();
    let mut next = || paths.next().unwrap();
    Scripts {
        script: next(),
        patched: next(),
        broken: next(),
        shell: next(),
    }
}

/// `shell -c script` with only PATH set; returns (exit code, stdout, stderr).
fn run_shell(shell: &str, script: &str) -> (i32, String, String) {
    let out = Command::new(shell)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .args(["-c", script])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Whether any process runs with this argument.
fn process_with_arg(arg: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|p| {
        std::fs::read(p.path().join("cmdline"))
            .map(|c| c.split(|b| *b == 0).any(|a| a == arg.as_bytes()))
            .unwrap_or(false)
    })
}

#[test]
fn mkbuildproxy_script_lives_and_dies_with_the_shell_that_sources_it() {
    let sc = scripts();
    let hello = std::fs::read_to_string(repo().join("tests/nix/fixtures/hello.txt")).unwrap();
    let body = format!(
        ". {}\necho \"pid $$\"\necho \"addr $BUILDPROXY_ADDR\"\n\
         curl -fsS --location https://buildproxy.invalid/latest",
        sc.script.display()
    );
    // bash as stdenv runs it (and with errtrace, `$(…)` forks a subshell),
    // and a POSIX sh.
    for (shell, prelude) in [
        (
            "bash",
            "set -eEuo pipefail; trap 'echo trap >&2' ERR EXIT\n",
        ),
        ("sh", "set -eu\n"),
    ] {
        let (code, out, err) = run_shell(shell, &format!("{prelude}{body}"));
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(out.ends_with(&hello), "{shell}: {out}");
        let field = |name: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap()
                .trim()
                .to_string()
        };
        let (pid, addr) = (field("pid "), field("addr "));
        let serving = format!("--serve-for-pid={pid}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while (process_with_arg(&serving) || TcpStream::connect(&addr).is_ok())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            !process_with_arg(&serving),
            "{shell}: the proxy outlived its shell"
        );
        assert!(
            TcpStream::connect(&addr).is_err(),
            "{shell}: {addr} still accepts connections"
        );
    }

    // `patches` reach the bundled patch plugin.
    let (code, out, err) = run_shell(
        "bash",
        &format!(
            "set -e; . {}; curl -fsS https://buildproxy.invalid/hello.txt",
            sc.patched.display()
        ),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, hello.replace("repository", "sandbox"));

    // A proxy that cannot start stops a `set -e` build at the `source`.
    let (code, out, err) = run_shell(
        "bash",
        &format!("set -e; . {}; echo after", sc.broken.display()),
    );
    assert_ne!(code, 0, "{out}{err}");
    assert!(!out.contains("after"), "{out}");
    assert!(err.contains("plugin broken is not"), "{err}");
    assert!(err.contains("the replay proxy did not start"), "{err}");

    // The dev-shell command: a command behind replay; `strict` fails a miss.
    let (code, out, err) = run_shell(
        "sh",
        &format!(
            "{}/bin/buildproxy-shell sh -c 'curl -fsS https://buildproxy.invalid/hello.txt; \
             curl -sS -o /dev/null https://buildproxy.invalid/not-captured'",
            sc.shell.display()
        ),
    );
    assert_eq!(out, hello);
    assert!(
        err.contains("https://buildproxy.invalid/not-captured"),
        "{err}"
    );
    assert_ne!(code, 0, "--strict must fail on a miss: {err}");
}

#[test]
fn flake_parses_and_its_outputs_are_wired() {
    let flake = repo().join("flake.nix").display().to_string();
    nix_ok("nix-instantiate", &["--parse", &flake]);
    assert_cases(&fixture("flake-outputs.nix"), "cases", 10);

    // The flake's own sandboxed check, built with the cargo binary.
    let file = fixture("flake-outputs.nix");
    let out = nix_build(&[&file, "-A", "replayCheck", "--argstr", "binary", BIN]);
    assert_eq!(
        std::fs::read_to_string(&out[0]).unwrap(),
        std::fs::read_to_string(repo().join("tests/nix/fixtures/hello.txt")).unwrap()
    );
}
