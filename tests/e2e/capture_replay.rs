//! Capture and replay, end to end: the main job.

use std::process::Command;

use crate::support::*;

#[test]
fn round_trip_capture_writes_true_hashes_and_offline_replay_serves_identical_bytes() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    let urls = [
        up.https_url("/bytes/123457"),
        up.https_url("/bytes/1000?version=1.2&arch=x86_64"),
        up.https_url("/bytes/77/a%20b%2Fc.tar.gz"),
        up.http_url("/bytes/2000000"),
        up.https_url("/status/404"),
    ];
    let script: String = urls
        .iter()
        .enumerate()
        .map(|(i, u)| format!("curl -sS '{u}' -o out{i}; "))
        .collect();
    let (code, err) = capture(s.dir.path(), &ca, &["--store", "store"], &script);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("wrote 5 entries"), "summary: {err}");

    let entries = eval_content(&s.path("proxy_content.nix"));
    for u in &urls[..4] {
        let e = entry(&entries, u);
        assert_eq!(e["status"], 200);
        assert_eq!(e["file"]["hash"], sri(&direct(&ca, u)), "{u}");
    }
    let probe = entry(&entries, &urls[4]);
    assert_eq!(probe["status"], 404);
    assert!(probe["file"].is_null());

    let hits_before = up.hits();
    let mut replay_script: String = urls[..4]
        .iter()
        .enumerate()
        .map(|(i, u)| format!("curl -sS '{u}' -o replay{i}; "))
        .collect();
    // A probe is status-only: its status replays, its body never existed.
    replay_script.push_str(&format!(
        "curl -sS -o /dev/null -w %{{http_code}} '{}' > probe",
        urls[4]
    ));
    let (code, err) = replay_offline(
        s.dir.path(),
        &["--store", "store", "--strict"],
        &replay_script,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(s.path("probe")).unwrap(), "404");
    for (i, url) in urls[..4].iter().enumerate() {
        assert_eq!(
            std::fs::read(s.path(&format!("out{i}"))).unwrap(),
            std::fs::read(s.path(&format!("replay{i}"))).unwrap(),
            "{url}"
        );
    }
    assert_eq!(up.hits(), hits_before, "replay must not reach the upstream");
}

#[test]
fn every_generated_fetchurl_instantiates_as_a_fixed_output_derivation() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    // Last path segments that are not valid store names.
    let urls = [
        up.https_url("/bytes/10?x=1&y=2"),
        up.https_url("/bytes/11/"),
        up.https_url("/bytes/12/%7Euser"),
        up.https_url("/bytes/13/.hidden"),
        up.https_url("/bytes/14/plain-name.tar.gz"),
    ];
    let script: String = urls
        .iter()
        .map(|u| format!("curl -sS '{u}' -o /dev/null; "))
        .collect();
    let (code, err) = capture(s.dir.path(), &ca, &[], &script);
    assert_eq!(code, 0, "{err}");
    let expr = format!(
        "map (e: e.file.drvPath) (import {} {{ fetchurl = import <nix/fetchurl.nix>; }})",
        s.path("proxy_content.nix").display()
    );
    let out = nix_tool("nix-instantiate")
        .args(["--eval", "--strict", "--json", "-E", &expr])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let drvs: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(drvs.len(), urls.len());
}

#[test]
fn the_hash_is_of_the_body_fetchurl_gets_even_when_the_client_asked_for_gzip() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    let url = up.https_url("/gzip");
    let (code, err) = capture(
        s.dir.path(),
        &ca,
        &[],
        &format!("curl -sS --compressed '{url}' -o got"),
    );
    assert_eq!(code, 0, "{err}");
    let identity = GZIP_TEXT.repeat(200);
    assert_eq!(std::fs::read_to_string(s.path("got")).unwrap(), identity);
    let entries = eval_content(&s.path("proxy_content.nix"));
    assert_eq!(
        entry(&entries, &url)["file"]["hash"],
        sri(identity.as_bytes())
    );
}

/// `path` on a fresh test upstream, captured by curl into `store` in a
/// scratch directory: the directory, the upstream (still serving), the URL
/// and the bytes curl got.
fn captured_into_store(path: &str) -> (Scratch, Upstream, String, Vec<u8>) {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    let url = up.https_url(path);
    let (code, err) = capture(
        s.dir.path(),
        &ca,
        &["--store", "store"],
        &format!("curl -sS '{url}' -o full"),
    );
    assert_eq!(code, 0, "{err}");
    let full = std::fs::read(s.path("full")).unwrap();
    (s, up, url, full)
}

#[test]
fn head_range_and_conditional_requests_are_answered_from_the_recorded_body() {
    let (s, _up, url, full) = captured_into_store("/bytes/1000000");
    let script = format!(
        "curl -sS -I '{url}' > head; curl -sS -r 1000-1999 '{url}' -o range; curl -sS -r -10 '{url}' -o tail; \
         etag=$(grep -i ^etag head | cut -d\" \" -f2 | tr -d \"\\r\"); \
         curl -sS -o /dev/null -w %{{http_code}} -H \"If-None-Match: $etag\" '{url}' > cond"
    );
    let (code, err) = replay_offline(s.dir.path(), &["--store", "store"], &script);
    assert_eq!(code, 0, "{err}");
    let head = std::fs::read_to_string(s.path("head"))
        .unwrap()
        .to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-length: 1000000"), "{head}");
    assert_eq!(std::fs::read(s.path("range")).unwrap(), &full[1000..2000]);
    assert_eq!(
        std::fs::read(s.path("tail")).unwrap(),
        &full[full.len() - 10..]
    );
    assert_eq!(std::fs::read_to_string(s.path("cond")).unwrap(), "304");
}

#[test]
fn a_plugin_that_lets_the_host_answer_recorded_requests_is_asked_only_for_the_rest() {
    let (s, up, url, full) = captured_into_store("/bytes/1000");
    // The fixture answers 418 "asked" to every request it is asked: only
    // the plain GET of the recorded URL may be answered without it.
    let plugin = format!("{}=answer-recorded", fixture_plugin("misbehave").display());
    let missing = up.https_url("/bytes/7");
    let script = format!(
        "curl -sS '{url}' -o got; \
         curl -sS -H 'If-None-Match: \"x\"' '{url}' > conditional; \
         curl -sS '{missing}' > missing; \
         curl -sS -I -o /dev/null -w %{{http_code}} '{url}' > head"
    );
    let (code, err) = replay_offline(
        s.dir.path(),
        &[
            "--store",
            "store",
            "--no-default-plugins",
            "--plugin",
            &plugin,
        ],
        &script,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(s.path("got")).unwrap(), full);
    for asked in ["conditional", "missing"] {
        assert_eq!(
            std::fs::read_to_string(s.path(asked)).unwrap(),
            "asked",
            "{asked}"
        );
    }
    assert_eq!(std::fs::read_to_string(s.path("head")).unwrap(), "418");
}

#[test]
fn fifty_parallel_downloads_capture_and_replay_intact() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    let mut config = String::new();
    for i in 0..50 {
        let url = if i % 2 == 0 {
            up.https_url(&format!("/bytes/{}?n={i}", 20_000 + i * 997))
        } else {
            up.http_url(&format!("/bytes/{}?n={i}", 30_000 + i))
        };
        config.push_str(&format!("url = \"{url}\"\noutput = \"p{i}\"\n"));
    }
    std::fs::write(s.path("urls.cfg"), config).unwrap();
    let run = "curl -sS --fail --parallel --parallel-max 50 -K urls.cfg";
    let (code, err) = capture(s.dir.path(), &ca, &["--store", "store"], run);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("wrote 50 entries"), "{err}");
    let captured: Vec<Vec<u8>> = (0..50)
        .map(|i| std::fs::read(s.path(&format!("p{i}"))).unwrap())
        .collect();
    for i in 0..50 {
        std::fs::remove_file(s.path(&format!("p{i}"))).unwrap();
    }
    let (code, err) = replay_offline(s.dir.path(), &["--store", "store", "--strict"], run);
    assert_eq!(code, 0, "{err}");
    for (i, want) in captured.iter().enumerate() {
        assert!(
            &std::fs::read(s.path(&format!("p{i}"))).unwrap() == want,
            "download {i} differs"
        );
    }
}

#[test]
fn a_miss_is_a_404_named_on_stderr_and_strict_fails_the_run() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    let url = up.https_url("/bytes/10");
    let (code, err) = capture(
        s.dir.path(),
        &ca,
        &["--store", "store"],
        &format!("curl -sS '{url}' -o /dev/null"),
    );
    assert_eq!(code, 0, "{err}");
    let missing = up.https_url("/bytes/11");
    let script = format!("curl -sS -o body -w %{{http_code}} '{missing}' > code");
    let (code, err) = replay_offline(s.dir.path(), &["--store", "store"], &script);
    assert_eq!(
        code, 0,
        "without --strict a miss does not fail the run: {err}"
    );
    assert_eq!(std::fs::read_to_string(s.path("code")).unwrap(), "404");
    let body = std::fs::read_to_string(s.path("body")).unwrap();
    assert!(
        body.contains(&missing) && body.contains("buildproxy capture"),
        "{body}"
    );
    assert!(err.contains(&format!("MISS GET {missing}")), "{err}");
    assert!(err.contains("re-run the capture"), "{err}");
    let (code, err) = replay_offline(s.dir.path(), &["--store", "store", "--strict"], &script);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--strict"), "{err}");
}

#[test]
fn the_commands_exit_status_passes_through_both_modes() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let (code, _) = capture(s.dir.path(), &ca, &["--store", "store"], "exit 7");
    assert_eq!(code, 7);
    let (code, _) = replay_offline(s.dir.path(), &["--store", "store"], "exit 9");
    assert_eq!(code, 9);
}

#[test]
fn detach_serves_a_shell_script_and_exits_with_it() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    let url = up.https_url("/bytes/5000");
    let (code, err) = capture(
        s.dir.path(),
        &ca,
        &["--store", "store"],
        &format!("curl -sS '{url}' -o want"),
    );
    assert_eq!(code, 0, "{err}");
    let script = format!(
        "set -e; eval \"$({BIN} replay --proxy-loopback --store store --detach)\"; \
         curl -sS --fail '{url}' -o got; echo \"$BUILDPROXY_ADDR\" > addr"
    );
    let status = Command::new("sh")
        .current_dir(s.dir.path())
        .args(["-c", &script])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        std::fs::read(s.path("got")).unwrap(),
        std::fs::read(s.path("want")).unwrap()
    );
    // The shell is gone: the proxy follows it promptly.
    let addr = std::fs::read_to_string(s.path("addr"))
        .unwrap()
        .trim()
        .to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(&addr).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the detached proxy outlived its shell"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn capturing_an_unchanged_build_twice_gives_byte_identical_files() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    let script = format!(
        "curl -sS '{}' '{}' '{}' -o /dev/null -o /dev/null -o /dev/null",
        up.https_url("/bytes/30?b"),
        up.https_url("/bytes/20"),
        up.http_url("/status/410")
    );
    for out in ["one.nix", "two.nix"] {
        let (code, err) = capture(s.dir.path(), &ca, &["-o", out], &script);
        assert_eq!(code, 0, "{out}: {err}");
    }
    let one = std::fs::read_to_string(s.path("one.nix")).unwrap();
    // Both runs recorded the three downloads: equal files of nothing prove
    // nothing.
    let urls: Vec<String> = eval_content(&s.path("one.nix"))
        .iter()
        .map(|e| e["url"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(urls.len(), 3, "{one}");
    for path in ["/bytes/30?b", "/bytes/20"] {
        assert!(urls.contains(&up.https_url(path)), "{path}: {one}");
    }
    assert!(urls.contains(&up.http_url("/status/410")), "{one}");
    assert_eq!(one, std::fs::read_to_string(s.path("two.nix")).unwrap());
}

#[test]
fn merge_keeps_old_entries_adds_new_ones_and_reports_changed_hashes() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    let (a, counter) = (up.https_url("/bytes/40"), up.https_url("/counter"));
    capture(
        s.dir.path(),
        &ca,
        &[],
        &format!("curl -sS '{a}' '{counter}' -o /dev/null -o /dev/null"),
    );
    let b = up.https_url("/bytes/41");
    let (code, err) = capture(
        s.dir.path(),
        &ca,
        &["--merge"],
        &format!("curl -sS '{b}' '{counter}' -o /dev/null -o /dev/null"),
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!("changed since the last capture: {counter}")),
        "{err}"
    );
    // b is new, the counter changed, a was kept.
    assert!(err.contains("(1 new, 1 changed, 1 kept;"), "{err}");
    let entries = eval_content(&s.path("proxy_content.nix"));
    assert_eq!(entries.len(), 3, "{entries:#?}");
    entry(&entries, &a);
    entry(&entries, &b);
}

#[test]
fn a_url_answering_two_different_bodies_keeps_the_first_and_warns() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    let counter = up.https_url("/counter");
    let (code, err) = capture(
        s.dir.path(),
        &ca,
        &[],
        &format!("curl -sS '{counter}' -o first; curl -sS '{counter}' -o /dev/null"),
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&counter) && err.contains("different body"),
        "{err}"
    );
    let entries = eval_content(&s.path("proxy_content.nix"));
    let first = std::fs::read(s.path("first")).unwrap();
    assert_eq!(entry(&entries, &counter)["file"]["hash"], sri(&first));
}

#[test]
fn replay_never_contacts_the_upstream_even_when_it_is_reachable() {
    // Offline replay proves nothing here: the upstream stays up, in the same
    // network namespace, and counts every request it gets.
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    let hit = up.https_url("/bytes/5000?hit");
    let want = direct(&ca, &hit);
    let (code, err) = capture(
        s.dir.path(),
        &ca,
        &["--store", "store"],
        &format!("curl -fsS -o /dev/null '{hit}'"),
    );
    assert_eq!(code, 0, "{err}");
    let before = up.hits();
    let (https_miss, http_miss) = (up.https_url("/bytes/5001"), up.http_url("/bytes/5002"));
    let script = format!(
        "curl -fsS -o hit '{hit}' && curl -fsS -I -o /dev/null '{hit}' && \
         curl -sS -o /dev/null -o /dev/null -w '%{{http_code}} ' '{https_miss}' '{http_miss}' \
         > misses"
    );
    let out = Command::new(BIN)
        .current_dir(s.dir.path())
        .args(["replay", "--proxy-loopback", "--store", "store", "--"])
        .args(["sh", "-c", &script])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(std::fs::read(s.path("hit")).unwrap(), want);
    assert_eq!(
        std::fs::read_to_string(s.path("misses")).unwrap(),
        "404 404 ",
        "{err}"
    );
    assert!(err.contains(&format!("MISS GET {https_miss}")), "{err}");
    assert!(err.contains(&format!("MISS GET {http_miss}")), "{err}");
    assert_eq!(
        up.hits(),
        before,
        "replay sent requests to a reachable upstream: {err}"
    );
}
