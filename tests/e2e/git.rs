//! git over smart HTTP against the real `git http-backend` behind HTTPS:
//! the real git CLI cloning through capture and then through an offline
//! replay, with the same commits; and `buildproxy git-fetch`, the
//! fixed-output fetcher of what capture recorded.

use std::path::{Path, PathBuf};
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

/// A git server as a forge runs one: `git http-backend` behind HTTPS, its
/// repositories under `root`, with a test CA made for the run.
struct GitServer {
    s: Scratch,
    ca: TestCa,
    root: PathBuf,
    up: FileUpstream,
}

impl GitServer {
    fn new() -> Self {
        let s = Scratch::new();
        let ca = TestCa::new(s.dir.path());
        let root = s.path("srv");
        std::fs::create_dir(&root).unwrap();
        let up = FileUpstream::start(&ca, &root);
        Self { s, ca, root, up }
    }

    /// The smart-HTTP URL of `root/<name>.git`.
    fn url(&self, name: &str) -> String {
        self.up.url(&format!("/smart/{name}.git"))
    }

    fn hits(&self) -> u64 {
        self.up.hits.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Runs `script(tag)` in `dir` through `capture --store` and then an
    /// offline `replay --strict --store`; what each run of the script
    /// printed (capture's, replay's). Both must succeed, and replay must
    /// not reach the server.
    fn round_trip(
        &self,
        dir: &Path,
        extra: &[&str],
        script: impl Fn(&str) -> String,
    ) -> (String, String) {
        std::fs::create_dir_all(dir).unwrap();
        let with = |more: &[&'static str]| -> Vec<&str> {
            extra.iter().copied().chain(more.iter().copied()).collect()
        };
        let (code, err) = capture(
            dir,
            &self.ca,
            &with(&["--store", "store"]),
            &format!("({}) > captured", script("c")),
        );
        assert_eq!(code, 0, "capture: {err}");
        let hits = self.hits();
        let (code, err) = replay_offline(
            dir,
            &with(&["--strict", "--store", "store"]),
            &format!("({}) > replayed", script("r")),
        );
        assert_eq!(code, 0, "replay: {err}");
        assert_eq!(self.hits(), hits, "replay reached the server");
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        (read("captured"), read("replayed"))
    }
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
    let g = GitServer::new();
    bare_repository(&g.s.path("work"), &g.root);
    let (s, ca, root, up) = (&g.s, &g.ca, &g.root, &g.up);
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
        let (code, err) = git_fetch(s, ca, &url, &head, &name);
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
    let (code, err) = git_fetch(s, ca, &url, &tag, "tag");
    assert_eq!(code, 0, "{err}");
    let set = objects::decode(&std::fs::read(s.path("tag")).unwrap()).unwrap();
    let tag_id = ObjectId::from_hex(&tag).unwrap();
    assert_eq!(set[&tag_id].kind, Kind::Tag);
    assert!(
        set.contains_key(&ObjectId::from_hex(&git(&bare, &["rev-parse", "v2^{commit}"])).unwrap())
    );

    // A commit the server does not have: an error naming URL and commit.
    let absent = "0123456789abcdef0123456789abcdef01234567";
    let (code, err) = git_fetch(s, ca, &url, absent, "absent");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(absent) && err.contains(&url), "{err}");
    assert!(!s.path("absent").exists());
}

/// What each clone of [`CLONES`] checked out: HEAD and every file's ID.
fn checked_out(dir: &Path) -> String {
    let mut out = String::new();
    for clone in ["full", "shallow", "tag", "sha"] {
        let d = dir.join(clone);
        out.push_str(&format!(
            "{clone}: {}\n{}\n",
            git(&d, &["rev-parse", "HEAD"]),
            git(&d, &["ls-tree", "-r", "HEAD"])
        ));
    }
    // The second ref fetched into the shallow clone.
    out.push_str(&git(&dir.join("shallow"), &["rev-parse", "v2^{commit}"]));
    out
}

/// Clones the way builds do: a full clone (protocol v2, git's default), a
/// depth-1 clone then a fetch of a second ref into it, an annotated tag
/// over protocol v0, and one commit by ID.
fn clones(url: &str, sha: &str) -> String {
    format!(
        "set -e; export GIT_CONFIG_NOSYSTEM=1 HOME=$PWD; \
         git clone -q {url} full; \
         git clone -q --depth 1 {url} shallow; \
         git -C shallow fetch -q --depth 1 origin tag v2; \
         git -c protocol.version=0 clone -q --branch v2 {url} tag; \
         git init -q sha; git -C sha fetch -q --depth 1 {url} {sha}; \
         git -C sha checkout -q FETCH_HEAD"
    )
}

#[test]
fn git_clones_over_smart_http_replay_offline_with_the_same_commits() {
    let g = GitServer::new();
    bare_repository(&g.s.path("work"), &g.root);
    let (s, ca, root, up) = (&g.s, &g.ca, &g.root, &g.up);
    let url = up.url("/smart/repo.git");
    let bare = root.join("repo.git");
    let sha = git(&bare, &["rev-parse", "main~1"]);
    let script = clones(&url, &sha);

    let cap = s.path("capture");
    std::fs::create_dir(&cap).unwrap();
    let (code, err) = capture(
        &cap,
        ca,
        &[
            "--require-secret",
            "--output",
            "../proxy_content.nix",
            "--store",
            "../store",
        ],
        &script,
    );
    assert_eq!(code, 0, "capture: {err}");
    assert!(err.contains(" 0 errors,"), "every fetch is recorded: {err}");
    let captured = checked_out(&cap);
    assert!(
        captured.contains(&git(&bare, &["rev-parse", "main"])),
        "{captured}"
    );
    assert!(captured.contains(&sha), "{captured}");

    // What was recorded: refs, and objects entries fetched again by Nix.
    let content = std::fs::read_to_string(s.path("proxy_content.nix")).unwrap();
    assert!(
        content.starts_with("{ fetchurl, fetchGitObjects }:"),
        "{content}"
    );
    assert!(content.contains("method = \"GIT\""), "{content}");
    assert!(
        !content.contains("git-upload-pack"),
        "no POST is recorded: {content}"
    );

    let hits = up.hits.load(std::sync::atomic::Ordering::SeqCst);
    let rep = s.path("replay");
    std::fs::create_dir(&rep).unwrap();
    let (code, err) = replay_offline(&rep, &["--strict", "--store", "../store"], &script);
    assert_eq!(code, 0, "replay: {err}");
    assert_eq!(
        checked_out(&rep),
        captured,
        "replay checked out other commits"
    );
    assert_eq!(up.hits.load(std::sync::atomic::Ordering::SeqCst), hits);

    // A commit that was never captured: a miss naming repository and commit.
    let absent = git(&bare, &["rev-parse", "main~3"]);
    let miss = s.path("miss");
    std::fs::create_dir(&miss).unwrap();
    let (code, err) = replay_offline(
        &miss,
        &["--store", "../store"],
        &format!(
            "export GIT_CONFIG_NOSYSTEM=1 HOME=$PWD; git init -q m; \
             git -C m fetch -q --depth 1 {url} {absent}"
        ),
    );
    assert_ne!(code, 0, "{err}");
    assert!(err.contains(&absent) && err.contains(&url), "{err}");
}

/// The whole path a packager takes: capture (hash only, no store), Nix
/// fetches the objects again with `fetchGitObjects` (its hash must be the
/// one capture recorded), and a sandboxed `nix-build` clones through
/// `mkBuildproxy` with no network.
#[test]
fn a_sandboxed_nix_build_clones_what_capture_recorded() {
    use crate::nix::{fixture, nix_build};
    let g = GitServer::new();
    bare_repository(&g.s.path("work"), &g.root);
    let (s, ca, up) = (&g.s, &g.ca, &g.up);
    let url = up.url("/smart/repo.git");
    // A shallow clone, then a second ref fetched into it: that fetch brings
    // only what the clone lacks, which capture completes from the first
    // fetch's objects even without a store.
    let script = format!(
        "export GIT_CONFIG_NOSYSTEM=1 HOME=$PWD; git clone -q --depth 1 {url} got && \
         git -C got fetch -q --depth 1 origin tag v2"
    );
    let (code, err) = capture(s.dir.path(), ca, &["--require-secret"], &script);
    assert_eq!(code, 0, "capture: {err}");
    assert!(err.contains(" 0 errors,"), "{err}");
    let clone = s.path("got");
    let head = git(&clone, &["rev-parse", "HEAD"]);
    let tree = git(&clone, &["ls-tree", "-r", "HEAD"]);
    let v2 = git(&clone, &["rev-parse", "v2^{commit}"]);

    let content = s.path("proxy_content.nix");
    // The file is sound, and its objects download again with its hashes.
    for fetch in [false, true] {
        let out = Command::new(BIN)
            .arg("check")
            .arg(&content)
            .args(if fetch {
                vec!["--fetch", "--upstream-ca"]
            } else {
                vec![]
            })
            .args(fetch.then_some(&ca.pem_path))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "check (fetch {fetch}): {err}");
        if fetch {
            assert!(err.contains("the same bytes"), "{err}");
        }
    }
    let build = |attr: &str| {
        nix_build(&[
            &fixture("sandboxed-git.nix"),
            "-A",
            attr,
            "--argstr",
            "binary",
            BIN,
            "--argstr",
            "content",
            content.to_str().unwrap(),
            "--argstr",
            "url",
            &url,
        ])
        .remove(0)
    };
    build("content");
    let hits = up.hits.load(std::sync::atomic::Ordering::SeqCst);
    let out = build("replay");
    assert_eq!(
        up.hits.load(std::sync::atomic::Ordering::SeqCst),
        hits,
        "the sandboxed build reached the upstream"
    );
    let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap();
    assert_eq!(read("head").trim(), head);
    assert_eq!(read("tree").trim(), tree);
    assert_eq!(read("v2").trim(), v2);
}

/// A bare repository `name.git` under `root` with one commit of `files`;
/// returns the commit.
fn small_repository(root: &Path, name: &str, files: &[(&str, &str)], setup: &str) -> String {
    let work = root.join(format!("{name}.work"));
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["config", "user.email", "t@e.org"]);
    git(&work, &["config", "user.name", "T"]);
    for (path, text) in files {
        std::fs::write(work.join(path), text).unwrap();
    }
    if !setup.is_empty() {
        let out = Command::new("sh")
            .current_dir(&work)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", &work)
            .args(["-ec", setup])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", name]);
    git(&work, &["tag", "-a", "v1", "-m", "one"]);
    let bare = format!("{name}.git");
    git(
        root,
        &["clone", "-q", "--bare", work.to_str().unwrap(), &bare],
    );
    git(&work, &["rev-parse", "HEAD"])
}

/// CMake `FetchContent` with `GIT_REPOSITORY`: one dependency by tag, one
/// by commit ID, the first with a submodule (CMake clones recursively),
/// captured, then configured again offline with the same commits.
#[test]
fn cmake_fetchcontent_git_repository_by_tag_and_sha_with_submodules_replays_offline() {
    tool("cmake");
    let g = GitServer::new();
    let root = &g.root;
    let sub = small_repository(root, "sub", &[("sub.txt", "inside\n")], "");
    small_repository(
        root,
        "lib",
        &[("lib.txt", "lib\n")],
        &format!(
            "git -c protocol.file.allow=always submodule add -q {} sub",
            root.join("sub.git").display()
        ),
    );
    // The gitlink's URL is the server's, as a published repository's is.
    let lib_work = root.join("lib.work");
    let sub_url = g.url("sub");
    git(
        &lib_work,
        &["config", "-f", ".gitmodules", "submodule.sub.url", &sub_url],
    );
    git(&lib_work, &["commit", "-q", "-am", "submodule over https"]);
    git(&lib_work, &["tag", "-f", "-a", "v2", "-m", "two"]);
    let lib_work = lib_work.to_str().unwrap();
    git(
        &root.join("lib.git"),
        &["fetch", "-q", "--tags", lib_work, "main:main"],
    );
    let other = small_repository(root, "other", &[("other.txt", "other\n")], "");

    let project = g.s.path("project");
    std::fs::create_dir(&project).unwrap();
    std::fs::write(
        project.join("CMakeLists.txt"),
        format!(
            "cmake_minimum_required(VERSION 3.14)\nproject(p NONE)\ninclude(FetchContent)\n\
             FetchContent_Declare(bytag GIT_REPOSITORY {} GIT_TAG v2)\n\
             FetchContent_Declare(bysha GIT_REPOSITORY {} GIT_TAG {other})\n\
             FetchContent_MakeAvailable(bytag bysha)\n",
            g.url("lib"),
            g.url("other")
        ),
    )
    .unwrap();
    let (captured, replayed) = g.round_trip(g.s.dir.path(), &[], |tag| {
        let build = format!("build-{tag}");
        format!(
            "export GIT_CONFIG_NOSYSTEM=1 HOME=$PWD; cmake -S {} -B {build} >/dev/null && \
             for d in bytag bysha; do git -C {build}/_deps/$d-src rev-parse HEAD; \
             git -C {build}/_deps/$d-src ls-tree -r HEAD; done && \
             git -C {build}/_deps/bytag-src/sub rev-parse HEAD && \
             cat {build}/_deps/bytag-src/sub/sub.txt",
            project.display()
        )
    });
    assert!(
        captured.contains(&other) && captured.contains(&sub),
        "{captured}"
    );
    assert!(captured.ends_with("inside\n"), "{captured}");
    assert_eq!(replayed, captured);
}

/// A cargo dependency on a git repository at a `rev`, fetched by cargo's
/// own git (libgit2, protocol v0/v1) and by the git CLI
/// (`net.git-fetch-with-cli`, as many Nix builds set it).
#[test]
fn cargo_git_dependency_replays_offline_with_the_locked_rev() {
    let cargo = env!("CARGO");
    let rustc = Path::new(cargo).with_file_name("rustc");
    let g = GitServer::new();
    let rev = small_repository(
        &g.root,
        "bpgit",
        &[
            (
                "Cargo.toml",
                "[package]\nname = \"bpgit\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
            ),
            ("lib.rs", "pub const VALUE: u32 = 7;\n"),
        ],
        "mkdir src && mv lib.rs src/",
    );
    let url = g.url("bpgit");
    for cli in [false, true] {
        let dir = g.s.path(if cli { "cli" } else { "libgit2" });
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(
            dir.join("Cargo.toml"),
            format!(
                "[package]\nname = \"consumer\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\
                 [dependencies]\nbpgit = {{ git = \"{url}\", rev = \"{rev}\" }}\n"
            ),
        )
        .unwrap();
        std::fs::write(dir.join("src/lib.rs"), "").unwrap();
        let (captured, replayed) = g.round_trip(&dir, &[], |tag| {
            format!(
                "export CARGO_HOME=$PWD/home-{tag} RUSTC={} CARGO_NET_GIT_FETCH_WITH_CLI={cli} \
                 GIT_CONFIG_NOSYSTEM=1 HOME=$PWD CARGO_TARGET_DIR=$PWD/target-{tag}; \
                 {cargo} check -q && cat home-{tag}/git/checkouts/*/*/src/lib.rs && \
                 grep -o '{rev}' Cargo.lock",
                rustc.display()
            )
        });
        assert!(
            captured.contains("VALUE: u32 = 7") && captured.contains(&rev),
            "cli {cli}: {captured}"
        );
        assert_eq!(replayed, captured, "cli {cli}");
    }
}

/// pip's VCS requirement (`name @ git+https://…@rev`): pip clones with the
/// git CLI (asking for a partial clone, which this server, like replay,
/// does not offer) and checks out the rev.
#[test]
fn pip_git_requirement_replays_offline_with_the_same_rev() {
    crate::clients::require_pip();
    let g = GitServer::new();
    let rev = small_repository(
        &g.root,
        "bppip",
        &[
            // An in-tree PEP 517 backend: pip needs the metadata, and this
            // needs no build tool installed.
            (
                "pyproject.toml",
                "[build-system]\nrequires = []\nbuild-backend = \"backend\"\nbackend-path = [\".\"]\n",
            ),
            (
                "backend.py",
                "import os\n\
                 def get_requires_for_build_wheel(config_settings=None):\n    return []\n\
                 def prepare_metadata_for_build_wheel(d, config_settings=None):\n    \
                 info = os.path.join(d, 'bppip-0.1.dist-info')\n    os.makedirs(info)\n    \
                 open(os.path.join(info, 'METADATA'), 'w').write(\
                 'Metadata-Version: 2.1\\nName: bppip\\nVersion: 0.1\\n')\n    \
                 return 'bppip-0.1.dist-info'\n\
                 def build_wheel(d, config_settings=None, metadata_directory=None):\n    \
                 raise NotImplementedError\n",
            ),
            ("bppip.py", "VALUE = 11\n"),
        ],
        "",
    );
    let url = g.url("bppip");
    let (captured, replayed) = g.round_trip(g.s.dir.path(), &["--require-secret"], |out| {
        format!(
            "export GIT_CONFIG_NOSYSTEM=1 HOME=$PWD; python3 -m pip download -q --no-deps \
             --no-build-isolation --no-index --disable-pip-version-check -d {out} \
             'bppip @ git+{url}@{rev}' && python3 -c \
             'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); \
             sys.stdout.write(z.read([n for n in z.namelist() if n.endswith(\"/bppip.py\")][0]).decode())' \
             {out}/bppip-0.1.zip"
        )
    });
    assert_eq!(captured, "VALUE = 11\n");
    assert_eq!(replayed, captured);
}

/// Objects past the plugin body limit cannot be recorded: the clone still
/// works in capture, and the summary names the URL, the commit and the flag
/// that raises the limit.
#[test]
fn objects_past_the_body_limit_are_an_error_naming_the_flag() {
    let g = GitServer::new();
    // 1.5 MiB that does not compress.
    let noise: String = (0..1_572_864u64)
        .map(|i| char::from(b'a' + (((i * 2_654_435_761) >> 13) % 26) as u8))
        .collect();
    small_repository(&g.root, "big", &[("noise.txt", &noise)], "");
    let url = g.url("big");
    let (code, err) = capture(
        g.s.dir.path(),
        &g.ca,
        &["--plugin-body-limit-mib", "1"],
        &format!("GIT_CONFIG_NOSYSTEM=1 HOME=$PWD git clone -q {url} got"),
    );
    assert_eq!(code, 0, "{err}");
    assert!(g.s.path("got/noise.txt").is_file());
    let line = err
        .lines()
        .find(|l| l.contains("error:") && l.contains(&url))
        .unwrap_or_else(|| panic!("no error names {url}: {err}"));
    assert!(line.contains("--plugin-body-limit-mib"), "{line}");
    let content = std::fs::read_to_string(g.s.path("proxy_content.nix")).unwrap();
    assert!(!content.contains("git-wants"), "{content}");
}
