//! Go modules: `go build` fetches its dependencies from a module proxy
//! (`GOPROXY`), through capture, then again through replay with no network.
//!
//! Go never sends a request for a loopback name (localhost, 127.0.0.1)
//! through a proxy, so the module proxy here is `goproxy.test`, a name an
//! /etc/hosts bind-mounted in the test's own mount namespace gives to
//! 127.0.0.1. The client is the real `go` (Debian's golang-go).

use std::path::Path;

use crate::support::*;

const GREETING: &str = "hello from a captured module\n";

/// Writes a module proxy's files under `root`, as the module proxy
/// protocol lays them out (`<module>/@v/{list,<v>.info,<v>.mod,<v>.zip}`):
/// `example.test/greet` v1.0.0, which requires `example.test/words` v1.2.0.
fn write_module_proxy(root: &Path) {
    let script = r#"
import json, os, sys, zipfile
root = sys.argv[1]
mods = {
  ("example.test/words", "v1.2.0"): {
    "go.mod": "module example.test/words\n\ngo 1.19\n",
    "words.go": "package words\n\n// Hello is the greeting.\nconst Hello = \"hello from a captured module\"\n",
  },
  ("example.test/greet", "v1.0.0"): {
    "go.mod": "module example.test/greet\n\ngo 1.19\n\nrequire example.test/words v1.2.0\n",
    "greet.go": "package greet\n\nimport \"example.test/words\"\n\n// Line is what main prints.\nfunc Line() string { return words.Hello }\n",
  },
}
for (mod, ver), files in mods.items():
    d = os.path.join(root, mod, "@v")
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, "list"), "w").write(ver + "\n")
    open(os.path.join(d, ver + ".info"), "w").write(json.dumps({"Version": ver, "Time": "2024-01-01T00:00:00Z"}))
    open(os.path.join(d, ver + ".mod"), "w").write(files["go.mod"])
    with zipfile.ZipFile(os.path.join(d, ver + ".zip"), "w") as z:
        for name, text in sorted(files.items()):
            z.writestr(f"{mod}@{ver}/{name}", text)
"#;
    let st = tool("python3")
        .args(["-c", script])
        .arg(root)
        .status()
        .unwrap();
    assert!(st.success());
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Runs `sh -c INNER` in new user and mount namespaces (and a network
/// namespace with only loopback when `offline`), where `goproxy.test` is
/// 127.0.0.1; (exit code, stderr).
fn in_namespace(dir: &Path, offline: bool, inner: &str) -> (i32, String) {
    let hosts = dir.join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost goproxy.test\n::1 localhost\n").unwrap();
    let setup = format!(
        "{}mount --bind {} /etc/hosts && {inner}",
        if offline { "ip link set lo up && " } else { "" },
        quote(hosts.to_str().unwrap())
    );
    let out = tool("unshare")
        .current_dir(dir)
        .arg(if offline { "-rmn" } else { "-rm" })
        .args(["sh", "-c", &setup])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn go_build_fetches_modules_from_a_module_proxy_through_capture_and_offline_replay() {
    for program in ["go", "mount"] {
        assert!(installed(program), "{}", missing_tool(program));
    }
    let s = Scratch::new();
    let dir = s.dir.path();
    let ca = TestCa::for_names(dir, &["goproxy.test"]);
    write_module_proxy(&s.path("modules"));
    let up = FileUpstream::start(&ca, &s.path("modules"));
    let app = s.path("app");
    std::fs::create_dir(&app).unwrap();
    std::fs::write(
        app.join("go.mod"),
        "module example.test/app\n\ngo 1.19\n\nrequire example.test/greet v1.0.0\n",
    )
    .unwrap();
    std::fs::write(
        app.join("main.go"),
        "package main\n\nimport (\n\t\"fmt\"\n\n\t\"example.test/greet\"\n)\n\nfunc main() { fmt.Print(greet.Line() + \"\\n\") }\n",
    )
    .unwrap();
    // Everything Go keeps is per run (`run`), so replay starts with an
    // empty module cache and must download every module again.
    let go = |run: &str| {
        format!(
            "export HOME={d}/{run} GOPATH={d}/{run}/gopath GOCACHE={d}/{run}/cache \
             GOPROXY=https://goproxy.test:{port} GONOSUMDB=example.test \
             GOFLAGS='-mod=mod -modcacherw' CGO_ENABLED=0; \
             cd {d}/app && go build -o {d}/{run}/app . && {d}/{run}/app > {d}/{run}.out",
            d = dir.display(),
            port = up.https.port(),
        )
    };

    let capture = format!(
        "exec {BIN} capture --require-secret --store store --upstream-ca {} -- sh -c {}",
        quote(ca.pem_path.to_str().unwrap()),
        quote(&go("capture"))
    );
    let (code, err) = in_namespace(dir, false, &capture);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(s.path("capture.out")).unwrap(),
        GREETING
    );
    // What Go fetched is recorded with the hashes of the files served.
    let content = std::fs::read_to_string(s.path("proxy_content.nix")).unwrap();
    for (module, file) in [
        ("example.test/greet", "v1.0.0.zip"),
        ("example.test/greet", "v1.0.0.mod"),
        ("example.test/words", "v1.2.0.zip"),
        ("example.test/words", "v1.2.0.mod"),
    ] {
        let bytes = std::fs::read(s.path(&format!("modules/{module}/@v/{file}"))).unwrap();
        let url = format!(
            "https://goproxy.test:{}/{module}/@v/{file}",
            up.https.port()
        );
        assert!(
            content.contains(&format!("url = \"{url}\"")),
            "{url}: {content}"
        );
        assert!(content.contains(&sri(&bytes)), "{url}: {content}");
    }
    // go.sum now pins every module's hash: replay must serve the same bytes.
    let go_sum = std::fs::read_to_string(app.join("go.sum")).unwrap();
    assert_eq!(go_sum.lines().count(), 4, "{go_sum}");

    let hits = up.hits.load(std::sync::atomic::Ordering::SeqCst);
    let replay = format!(
        "exec {BIN} replay --require-secret --store store --strict -- sh -c {}",
        quote(&go("replay"))
    );
    let (code, err) = in_namespace(dir, true, &replay);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(s.path("replay.out")).unwrap(),
        GREETING
    );
    assert!(
        err.contains("go: downloading example.test/words v1.2.0"),
        "replay must have downloaded the modules again: {err}"
    );
    assert_eq!(
        up.hits.load(std::sync::atomic::Ordering::SeqCst),
        hits,
        "replay must not reach the module proxy"
    );
    assert_eq!(std::fs::read_to_string(app.join("go.sum")).unwrap(), go_sum);
}
