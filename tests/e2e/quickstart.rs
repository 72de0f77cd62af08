//! README's first quick-start command: it captures the example build from a
//! local HTTPS server and replays it in a namespace with no network. The
//! script's own `cargo build` is skipped (`BUILDPROXY_BIN`): while the suite
//! runs, cargo holds the build lock a nested cargo would wait on.

use std::process::Command;

#[test]
fn the_readme_quick_start_captures_and_replays_the_example_offline() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    assert!(
        readme.contains("\n./example/quickstart/run.sh\n"),
        "README's quick start no longer runs example/quickstart/run.sh: update this test"
    );
    let out = Command::new("./example/quickstart/run.sh")
        .current_dir(repo)
        .env("BUILDPROXY_BIN", crate::support::BIN)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let built = "built with 1.3.1 and \"mode\": \"release\"";
    let (capture, replay) = stdout
        .split_once("== replay")
        .unwrap_or_else(|| panic!("no replay phase: {stdout}"));
    assert!(capture.contains(built), "capture: {stdout}");
    assert!(replay.contains(built), "offline replay: {stdout}\n{stderr}");
    assert!(
        capture.contains("fetchurl {"),
        "the content file is shown: {stdout}"
    );
}
