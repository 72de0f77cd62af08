//! Prepared content (`buildproxy prepare`, and the index `capture --store`
//! writes): replay answers from it exactly as from the JSON, and a damaged
//! or stale one is caught at start, never at request time.

use std::fs;
use std::process::Command;
use std::time::{Duration, SystemTime};

use crate::support::*;

/// Captures two bodies and a 404 into `store`; returns their URLs.
fn captured_store(s: &Scratch, up: &Upstream, ca: &TestCa) -> Vec<String> {
    let urls = vec![
        up.https_url("/bytes/4321"),
        up.http_url("/bytes/70000?v=1"),
        up.https_url("/status/404"),
    ];
    let script: String = urls
        .iter()
        .enumerate()
        .map(|(i, u)| format!("curl -sS '{u}' -o out{i}; "))
        .collect();
    let (code, err) = capture(s.dir.path(), ca, &["--store", "store"], &script);
    assert_eq!(code, 0, "{err}");
    urls
}

fn fetch_all(urls: &[String]) -> String {
    urls.iter()
        .enumerate()
        .map(|(i, u)| format!("curl -sS -w '%{{http_code}}\\n' '{u}' -o replay{i} >> codes; "))
        .collect()
}

#[test]
fn prepared_content_replays_like_the_json_and_damage_fails_at_start() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    let urls = captured_store(&s, &up, &ca);

    // The store's index as a content JSON with absolute paths, as Nix makes
    // one with store paths.
    let store = fs::canonicalize(s.path("store")).unwrap();
    let mut list: Vec<serde_json::Value> =
        serde_json::from_slice(&fs::read(store.join("index.json")).unwrap()).unwrap();
    for e in &mut list {
        if let Some(f) = e["file"].as_str() {
            e["file"] = store.join(f).display().to_string().into();
        }
    }
    fs::write(s.path("content.json"), serde_json::to_vec(&list).unwrap()).unwrap();
    let root = store.display().to_string();
    let prepare = Command::new(BIN)
        .current_dir(s.dir.path())
        .args(["prepare", "content.json", "--output", "content.prepared"])
        .args(["--allow-root", &root])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&prepare.stderr);
    assert!(prepare.status.success(), "{err}");
    assert!(err.contains("prepared 3 entries"), "{err}");

    let hits = up.hits();
    let args = ["--content", "content.prepared", "--allow-root", &root];
    let (code, err) = replay_offline(
        s.dir.path(),
        &[&args[..], &["--strict"]].concat(),
        &fetch_all(&urls),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        fs::read_to_string(s.path("codes")).unwrap(),
        "200\n200\n404\n"
    );
    for (i, url) in urls[..2].iter().enumerate() {
        assert_eq!(
            fs::read(s.path(&format!("out{i}"))).unwrap(),
            fs::read(s.path(&format!("replay{i}"))).unwrap(),
            "{url}"
        );
    }
    assert_eq!(up.hits(), hits, "replay must not reach the upstream");

    // A flipped bit in the block directory: refused before listening, naming the
    // file and how to make it again.
    let mut bytes = fs::read(s.path("content.prepared")).unwrap();
    bytes[80] ^= 1;
    fs::write(s.path("content.prepared"), &bytes).unwrap();
    let (code, err) = replay_offline(s.dir.path(), &args, "touch served");
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("content.prepared: its checksum does not match"),
        "{err}"
    );
    assert!(err.contains("buildproxy prepare"), "{err}");
    assert!(!s.path("served").exists(), "the command must not run");

    // Bad content fails `prepare`, naming the entry and the fix.
    list[1]["file"] = "/etc/passwd".into();
    fs::write(s.path("bad.json"), serde_json::to_vec(&list).unwrap()).unwrap();
    let out = Command::new(BIN)
        .current_dir(s.dir.path())
        .args([
            "prepare",
            "bad.json",
            "--output",
            "bad.prepared",
            "--allow-root",
            &root,
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("bad.json: entry [1]"), "{err}");
    assert!(err.contains("outside the allowed roots"), "{err}");
    assert!(err.contains("--allow-root"), "{err}");
}

#[test]
fn a_store_replays_from_its_prepared_index_until_index_json_is_edited() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    let urls = captured_store(&s, &up, &ca);
    assert!(s.path("store/index.prepared").is_file());
    let index = s.path("store/index.json");
    let list: Vec<serde_json::Value> = serde_json::from_slice(&fs::read(&index).unwrap()).unwrap();

    // index.json unreadable but older than the prepared index: replay
    // never reads it.
    fs::write(&index, b"not json").unwrap();
    let touch = |when: SystemTime| {
        let f = fs::File::options().write(true).open(&index).unwrap();
        f.set_modified(when).unwrap();
    };
    touch(SystemTime::now() - Duration::from_secs(3600));
    let (code, err) = replay_offline(
        s.dir.path(),
        &["--store", "store", "--strict"],
        &fetch_all(&urls),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        fs::read_to_string(s.path("codes")).unwrap(),
        "200\n200\n404\n"
    );

    // Edited after it (here: dropping the first entry), index.json wins,
    // and a broken one fails at start naming it.
    touch(SystemTime::now());
    let (code, err) = replay_offline(s.dir.path(), &["--store", "store"], "touch served");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("index.json:1:"), "{err}");
    assert!(!s.path("served").exists());
    fs::write(&index, serde_json::to_vec(&list[1..]).unwrap()).unwrap();
    fs::remove_file(s.path("codes")).unwrap();
    let (code, err) = replay_offline(s.dir.path(), &["--store", "store"], &fetch_all(&urls));
    assert_eq!(code, 0, "{err}");
    let first = list[0]["url"].as_str().unwrap();
    assert!(err.contains(&format!("MISS GET {first}")), "{err}");
}
