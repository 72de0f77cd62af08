//! Faults: nothing that completed is lost, nothing wrong is served.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

fn wait_for(path: &std::path::Path) {
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

#[test]
fn a_capture_killed_with_sigkill_loses_nothing_that_completed() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    let (a, b) = (up.https_url("/bytes/4096?a"), up.http_url("/status/404"));
    let mut child = Command::new(BIN)
        .current_dir(s.dir.path())
        .args([
            "capture",
            "--proxy-loopback",
            "--upstream-ca",
            ca.pem_path.to_str().unwrap(),
        ])
        .args([
            "--",
            "sh",
            "-c",
            &format!("curl -sS '{a}' '{b}' -o want -o /dev/null && touch fetched && sleep 60"),
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&s.path("fetched"));
    // The journal is written as each exchange completes; give its writer
    // thread the moment an fsync takes.
    let journal = s.path("proxy_content.nix.journal");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&journal)
        .map(|j| j.lines().count())
        .unwrap_or(0)
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "the journal never held both entries"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !s.path("proxy_content.nix").exists(),
        "a killed capture cannot have written the file"
    );

    let out = Command::new(BIN)
        .current_dir(s.dir.path())
        .args(["capture", "--recover"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("recovering 2 entries"), "{err}");
    assert!(
        !journal.exists(),
        "the journal is gone once the file holds its entries"
    );
    let text = std::fs::read_to_string(s.path("proxy_content.nix")).unwrap();
    let want = std::fs::read(s.path("want")).unwrap();
    assert!(text.contains(&a) && text.contains(&sri(&want)), "{text}");
    assert!(
        text.contains(&b) && text.contains("status_code = 404"),
        "{text}"
    );
}

#[test]
fn the_next_capture_after_a_crash_keeps_what_the_crashed_one_recorded() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    let a = up.https_url("/bytes/100?first");
    let mut child = Command::new(BIN)
        .current_dir(s.dir.path())
        .args([
            "capture",
            "--proxy-loopback",
            "--upstream-ca",
            ca.pem_path.to_str().unwrap(),
        ])
        .args([
            "--",
            "sh",
            "-c",
            &format!("curl -sS '{a}' -o /dev/null && touch fetched && sleep 60"),
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&s.path("fetched"));
    let journal = s.path("proxy_content.nix.journal");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&journal)
        .unwrap_or_default()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the journal stayed empty");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let b = up.https_url("/bytes/100?second");
    let out = Command::new(BIN)
        .current_dir(s.dir.path())
        .args([
            "capture",
            "--proxy-loopback",
            "--upstream-ca",
            ca.pem_path.to_str().unwrap(),
        ])
        .args(["--", "curl", "-sS", &b, "-o", "/dev/null"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(s.path("proxy_content.nix")).unwrap();
    assert!(text.contains(&a) && text.contains(&b), "{text}");
}
