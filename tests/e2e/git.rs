//! git over smart HTTP: `buildproxy git-fetch`, the fixed-output fetcher of
//! one commit, against the real `git http-backend` behind HTTPS.

use std::path::Path;
use std::process::Command;

use buildproxy::git::object::{Kind, ObjectId};
use buildproxy::git::objects;

use crate::support::*;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = tool("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .env("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A bare repository under `root` with history, similar files (so packs
/// hold deltas) and an annotated tag.
fn bare_repository(work: &Path, root: &Path) {
    std::fs::create_dir_all(work.join("src")).unwrap();
    git(work, &["init", "-q", "-b", "main"]);
    git(work, &["config", "user.email", "t@e.org"]);
    git(work, &["config", "user.name", "T"]);
    for i in 0..4 {
        for f in 0..20 {
            let text: String = (0..200)
                .map(|l| format!("file {f} line {l} rev {}\n", i * (l % 3)))
                .collect();
            std::fs::write(work.join(format!("src/f{f}.txt")), text).unwrap();
        }
        git(work, &["add", "."]);
        git(work, &["commit", "-q", "-m", &format!("rev {i}")]);
        if i == 2 {
            git(work, &["tag", "-a", "v2", "-m", "two"]);
        }
    }
    git(
        root,
        &["clone", "-q", "--bare", work.to_str().unwrap(), "repo.git"],
    );
}

fn git_fetch(s: &Scratch, ca: &TestCa, url: &str, rev: &str, out: &str) -> (i32, String) {
    let o = Command::new(BIN)
        .args(["git-fetch", url, rev, "-o"])
        .arg(s.path(out))
        .arg("--upstream-ca")
        .arg(&ca.pem_path)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn git_fetch_writes_the_same_bytes_for_a_commit_however_the_server_packs_it() {
    let s = Scratch::new();
    let ca = TestCa::new(s.dir.path());
    let root = s.path("srv");
    std::fs::create_dir(&root).unwrap();
    bare_repository(&s.path("work"), &root);
    let up = FileUpstream::start(&ca, &root);
    let url = up.url("/smart/repo.git");
    let bare = root.join("repo.git");
    let head = git(&bare, &["rev-parse", "main"]);

    // The server packs differently each time: loose objects, an aggressive
    // repack with deep deltas, then a repack with no deltas or compression.
    let mut outputs = Vec::new();
    for (i, repack) in [
        None,
        Some(vec![
            "-c",
            "pack.compression=9",
            "repack",
            "-adfq",
            "--window=250",
            "--depth=250",
        ]),
        Some(vec![
            "-c",
            "pack.compression=0",
            "repack",
            "-adfq",
            "--window=0",
        ]),
    ]
    .into_iter()
    .enumerate()
    {
        if let Some(args) = repack {
            git(&bare, &args);
        }
        let name = format!("objects-{i}");
        let (code, err) = git_fetch(&s, &ca, &url, &head, &name);
        assert_eq!(code, 0, "{err}");
        outputs.push(std::fs::read(s.path(&name)).unwrap());
    }
    assert_eq!(outputs[0], outputs[1]);
    assert_eq!(outputs[0], outputs[2]);

    // What it wrote is the commit, its tree and its 20 files, each checked
    // against its ID, and nothing of the history.
    let set = objects::decode(&outputs[0]).unwrap();
    let commit = ObjectId::from_hex(&head).unwrap();
    assert_eq!(set[&commit].kind, Kind::Commit);
    assert_eq!(set.len(), 1 + 2 + 20, "commit, root tree, src tree, files");
    assert_eq!(
        set.values().filter(|o| o.kind == Kind::Blob).count(),
        git(&bare, &["ls-tree", "-r", "main"]).lines().count()
    );

    // An annotated tag brings itself and its commit.
    let tag = git(&bare, &["rev-parse", "v2"]);
    let (code, err) = git_fetch(&s, &ca, &url, &tag, "tag");
    assert_eq!(code, 0, "{err}");
    let set = objects::decode(&std::fs::read(s.path("tag")).unwrap()).unwrap();
    let tag_id = ObjectId::from_hex(&tag).unwrap();
    assert_eq!(set[&tag_id].kind, Kind::Tag);
    assert!(
        set.contains_key(&ObjectId::from_hex(&git(&bare, &["rev-parse", "v2^{commit}"])).unwrap())
    );

    // A commit the server does not have: an error naming URL and commit.
    let absent = "0123456789abcdef0123456789abcdef01234567";
    let (code, err) = git_fetch(&s, &ca, &url, absent, "absent");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(absent) && err.contains(&url), "{err}");
    assert!(!s.path("absent").exists());
}
