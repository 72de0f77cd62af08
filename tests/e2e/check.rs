//! `buildproxy check`: what will go wrong with a content file, entry by
//! entry, and an exit status that says whether it is sound.

use std::path::Path;
use std::process::Command;

use crate::support::*;

/// `buildproxy check ARGS…`: (exit code, stdout).
fn check(args: &[&Path]) -> (i32, String) {
    let out = Command::new(BIN).arg("check").args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.is_empty() || out.status.code() == Some(2),
        "{stderr}"
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The paragraph `check` printed for entry `[index]`.
fn about(report: &str, index: usize) -> String {
    let tag = format!(": entry [{index}] (");
    report
        .split_inclusive('\n')
        .collect::<Vec<_>>()
        .chunks(2)
        .filter(|c| c[0].contains(&tag))
        .map(|c| c.concat())
        .collect()
}

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/nix")
        .join(name)
}

#[test]
fn check_names_what_fails_in_a_nix_buildproxy_file_of_git_clones_and_signed_urls() {
    let file = fixture("nix-buildproxy-fetchcontent.nix");
    let (code, out) = check(&[&file]);
    assert_eq!(code, 1, "{out}");
    // The ref advertisement was recorded as a download; what follows it
    // cannot replay.
    let adv = about(&out, 0);
    assert!(
        adv.contains("warning: a git smart-HTTP ref advertisement"),
        "{out}"
    );
    // Every git-upload-pack is a POST nix-buildproxy wrote as a GET.
    for i in [1, 2, 4] {
        let e = about(&out, i);
        assert!(
            e.contains(
                "error: a git smart-HTTP negotiation (recorded as a GET, but git POSTs there)"
            ),
            "[{i}]: {out}"
        );
        assert!(
            e.contains("fix: capture the build again with buildproxy: its git plugin"),
            "[{i}]: {out}"
        );
    }
    // The second one also repeats the first with another hash.
    assert!(
        about(&out, 2).contains("the same request as entry [1] with a different hash"),
        "{out}"
    );
    assert!(
        about(&out, 2).contains("delete one of [1] and [2]"),
        "{out}"
    );
    // A redirect nix-buildproxy recorded as an empty file.
    assert!(about(&out, 5).contains("warning: an empty body"), "{out}");
    // The release asset: fetched from a URL that expires, and named by a
    // query Nix refuses as a store name.
    let asset = about(&out, 6);
    assert!(asset.contains("a signed URL that expires"), "{out}");
    assert!(
        asset.contains("add `name = \"22\";` to its fetchurl"),
        "{out}"
    );
    assert!(
        out.ends_with("7 entries, 6 errors, 3 warnings: not sound: fix the errors above\n"),
        "{out}"
    );
}

#[test]
fn check_says_a_nix_buildproxy_file_and_a_fresh_capture_are_sound() {
    // Its two bodies are placeholders, the empty file: worth a warning
    // (nix-buildproxy records redirects so), not an error.
    let (code, out) = check(&[&fixture("nix-buildproxy-content.nix")]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.ends_with("3 entries, 0 errors, 2 warnings: sound\n"),
        "{out}"
    );
    assert!(about(&out, 1).contains("warning: an empty body"), "{out}");

    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let up = Upstream::start(&ca);
    let script = format!(
        "curl -sSf '{}' -o a && curl -sSf '{}' -o b && curl -sSL '{}' -o c && curl -s '{}' -o d",
        up.https_url("/bytes/3000"),
        up.https_url("/bytes/10?x=1&y=%20"),
        up.https_url("/redirect?to=/bytes/77"),
        up.https_url("/status/404"),
    );
    let (code, err) = capture(s.dir.path(), &ca, &["--store", "store"], &script);
    assert_eq!(code, 0, "{err}");
    let (code, out) = check(&[&s.path("proxy_content.nix")]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.ends_with("5 entries, 0 errors, 0 warnings: sound\n"),
        "{out}"
    );
    for args in [
        vec![s.path("store")],
        vec!["--store".into(), s.path("store")],
    ] {
        let args: Vec<&Path> = args.iter().map(|p| p.as_path()).collect();
        let (code, out) = check(&args);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("index.json: 5 entries, 0 errors"), "{out}");
    }

    // A blob changed behind the store's back is found: replay would serve it.
    let blobs = s.path("store/blobs/sha256");
    let blob = std::fs::read_dir(&blobs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(&blob, b"tampered").unwrap();
    let (code, out) = check(&[&s.path("store")]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("hashes to sha256-"), "{out}");
    assert!(out.contains("replay would serve wrong bytes"), "{out}");
}

#[test]
fn check_reports_every_unreadable_entry_not_only_the_first() {
    let s = Scratch::new();
    let file = s.path("proxy_content.nix");
    std::fs::write(
        &file,
        r#"{ fetchurl }: [
  { url = "https://e.org/a"; file = fetchurl { url = "https://e.org/a"; hash = "md5-x"; }; }
  { url = "https://e.org/b"; status_code = 200; file = null; }
  { url = "https://e.org/c"; }
]"#,
    )
    .unwrap();
    let (code, out) = check(&[&file]);
    assert_eq!(code, 1, "{out}");
    assert!(about(&out, 0).contains("error: cannot be read"), "{out}");
    assert!(
        about(&out, 1).contains("warning: a 200 with `file = null`"),
        "{out}"
    );
    assert!(about(&out, 2).contains("has no `file`"), "{out}");
    // Not a content file at all: exit 2, naming the file.
    std::fs::write(&file, "{ fetchurl }: { }").unwrap();
    let out = Command::new(BIN).arg("check").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&file.display().to_string()), "{err}");
}

#[test]
fn capture_merge_keeps_the_first_of_two_recordings_as_capture_does_and_counts_it() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let (first, second) = (sri(b"first"), sri(b"second"));
    let body = |hash: &str| {
        format!(
            "  {{ url = \"https://e.org/dl/x.tar.gz\"; file = fetchurl {{ url = \"https://e.org/dl/x.tar.gz\"; hash = \"{hash}\"; }}; }}\n"
        )
    };
    std::fs::write(
        s.path("proxy_content.nix"),
        format!("{{ fetchurl }}: [\n{}{}]\n", body(&first), body(&second)),
    )
    .unwrap();
    let (code, _) = check(&[&s.path("proxy_content.nix")]);
    assert_eq!(code, 1);
    let (code, err) = capture(s.dir.path(), &ca, &["--merge"], "true");
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("1 conflicting"), "{err}");
    assert!(
        err.contains("records https://e.org/dl/x.tar.gz more than once with different answers; keeping the first"),
        "{err}"
    );
    let written = std::fs::read_to_string(s.path("proxy_content.nix")).unwrap();
    assert!(
        written.contains(&first) && !written.contains(&second),
        "{written}"
    );
    let (code, out) = check(&[&s.path("proxy_content.nix")]);
    assert_eq!(code, 0, "{out}");
}
