//! The git mechanism against the real git CLI: packs git wrote are read,
//! and clones (v0 and v2, full, shallow, a tag, a sha, a second fetch) are
//! served from the canonical representation over plain HTTP on loopback.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use super::object::{Kind, Object, ObjectId};
use super::objects::{closure, decode, encode};
use super::pack::read_pack;
use super::upload_pack::{Ref, Repository};

/// The real git; a missing one is one line naming its package.
fn git_command() -> Command {
    let found = Command::new("git").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "this test needs `git`, which is not installed: apt-get install git \
         (tests/run.sh installs everything the tests need)"
    );
    Command::new("git")
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_command()
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
    String::from_utf8(out.stdout).unwrap()
}

/// (status, stderr) of a git command that may fail.
fn git_status(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = git_command()
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An upstream repository: three commits on main (a subdirectory, an
/// executable, a symlink), a branch, an annotated and a lightweight tag.
fn upstream(dir: &Path) -> std::path::PathBuf {
    let up = dir.join("up");
    std::fs::create_dir_all(up.join("src/deep")).unwrap();
    git(&up, &["init", "-q", "-b", "main"]);
    git(&up, &["config", "user.email", "t@e.org"]);
    git(&up, &["config", "user.name", "T"]);
    for i in 0..3 {
        std::fs::write(up.join("README"), format!("version {i}\n")).unwrap();
        std::fs::write(up.join("src/deep/data.bin"), vec![i as u8; 70_000 + i]).unwrap();
        std::fs::write(up.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
        git(&up, &["add", "."]);
        git(&up, &["update-index", "--chmod=+x", "run.sh"]);
        git(&up, &["commit", "-q", "-m", &format!("commit {i}")]);
        if i == 1 {
            git(&up, &["tag", "-a", "v1.0", "-m", "release 1.0"]);
            git(&up, &["branch", "stable"]);
        }
    }
    let _ = std::os::unix::fs::symlink("README", up.join("link"));
    git(&up, &["add", "link"]);
    git(&up, &["commit", "-q", "-m", "link"]);
    git(&up, &["tag", "light"]);
    up
}

/// Every object of a repository, as `git cat-file` prints them.
fn all_objects(repo: &Path) -> HashMap<ObjectId, Object> {
    let out = git_command()
        .current_dir(repo)
        .args(["cat-file", "--batch-all-objects", "--batch"])
        .output()
        .unwrap();
    let mut rest = &out.stdout[..];
    let mut map = HashMap::new();
    while !rest.is_empty() {
        let nl = rest.iter().position(|&b| b == b'\n').unwrap();
        let head = std::str::from_utf8(&rest[..nl]).unwrap();
        let mut p = head.split(' ');
        let id = ObjectId::from_hex(p.next().unwrap()).unwrap();
        let kind = Kind::from_name(p.next().unwrap()).unwrap();
        let size: usize = p.next().unwrap().parse().unwrap();
        let o = Object::new(kind, rest[nl + 1..nl + 1 + size].to_vec());
        assert_eq!(o.id(), id);
        map.insert(id, o);
        rest = &rest[nl + 2 + size..];
    }
    map
}

/// What `git ls-remote` says of `repo`, as refs.
fn refs_of(repo: &Path) -> Vec<Ref> {
    let head_target = git(repo, &["symbolic-ref", "HEAD"]).trim().to_owned();
    let mut refs: Vec<Ref> = Vec::new();
    for line in git(repo, &["ls-remote", "."]).lines() {
        let (id, name) = line.split_once('\t').unwrap();
        let id = ObjectId::from_hex(id).unwrap();
        if let Some(base) = name.strip_suffix("^{}") {
            refs.iter_mut().find(|r| r.name == base).unwrap().peeled = Some(id);
            continue;
        }
        let target = (name == "HEAD").then(|| head_target.clone());
        refs.push(Ref {
            name: name.into(),
            id,
            peeled: None,
            target,
        });
    }
    refs
}

/// The repository replay would hold: each ref tip's canonical objects
/// (encoded and decoded again, so the file format is what is served).
fn replayed(up: &Path, url: &str, tips: &[&Ref]) -> Repository {
    let all = all_objects(up);
    let mut objects = HashMap::new();
    for r in tips {
        let set = closure(r.id, &|id| all.get(id).cloned()).unwrap();
        objects.extend(decode(&encode(&set)).unwrap());
    }
    Repository {
        url: url.into(),
        refs: refs_of(up),
        objects,
    }
}

/// A minimal HTTP/1.1 server for `repo` on loopback, one request per
/// connection, as a git smart-HTTP server is reached.
fn serve(repo: Repository) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/repo.git", listener.local_addr().unwrap());
    let repo = Arc::new(repo);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let repo = repo.clone();
            std::thread::spawn(move || {
                let _ = handle(&repo, stream);
            });
        }
    });
    url
}

fn handle(repo: &Repository, stream: std::net::TcpStream) -> std::io::Result<()> {
    let mut r = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    r.read_line(&mut request_line)?;
    let mut headers = HashMap::new();
    loop {
        let mut l = String::new();
        r.read_line(&mut l)?;
        let l = l.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').unwrap();
        headers.insert(k.to_ascii_lowercase(), v.trim().to_owned());
    }
    let mut body = Vec::new();
    if let Some(n) = headers.get("content-length") {
        body.resize(n.parse().unwrap(), 0);
        r.read_exact(&mut body)?;
    } else if headers
        .get("transfer-encoding")
        .is_some_and(|t| t == "chunked")
    {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    if headers.get("content-encoding").is_some_and(|e| e == "gzip") {
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut plain)?;
        body = plain;
    }
    let target = request_line.split(' ').nth(1).unwrap_or("");
    let v2 = headers
        .get("git-protocol")
        .is_some_and(|p| p.contains("version=2"));
    let (ctype, out) = if target.ends_with("/info/refs?service=git-upload-pack") {
        (super::upload_pack::ADVERTISEMENT_TYPE, repo.advertise(v2))
    } else if target.ends_with("/git-upload-pack") {
        match repo.upload_pack(&body) {
            Ok(a) => (super::upload_pack::RESULT_TYPE, a.body),
            Err(e) => ("text/plain", e.to_string().into_bytes()),
        }
    } else {
        ("text/plain", b"not found".to_vec())
    };
    let mut w = stream;
    write!(
        w,
        "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        out.len()
    )?;
    w.write_all(&out)?;
    w.flush()
}

fn tip<'a>(refs: &'a [Ref], name: &str) -> &'a Ref {
    refs.iter().find(|r| r.name == name).unwrap()
}

#[test]
fn the_canonical_form_is_the_same_whatever_pack_git_sends() {
    let dir = tempfile::tempdir().unwrap();
    let up = upstream(dir.path());
    let head = ObjectId::from_hex(git(&up, &["rev-parse", "HEAD"]).trim()).unwrap();
    let pack = |extra: &[&str]| {
        let mut child = git_command()
            .current_dir(&up)
            .args(extra)
            .args(["pack-objects", "--stdout", "--revs"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let tips = git(&up, &["for-each-ref", "--format=%(objectname)"]);
        child
            .stdin
            .take()
            .unwrap()
            .write_all(tips.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap().stdout
    };
    let plain = pack(&["-c", "pack.compression=0", "-c", "pack.window=0"]);
    let deltas = pack(&[
        "-c",
        "pack.compression=9",
        "-c",
        "pack.window=50",
        "-c",
        "pack.depth=50",
    ]);
    assert_ne!(plain, deltas);
    let canonical = |bytes: &[u8]| {
        let objs: HashMap<_, _> = read_pack(bytes, &|_| None)
            .unwrap()
            .into_iter()
            .map(|o| (o.id(), o))
            .collect();
        encode(&closure(head, &|id| objs.get(id).cloned()).unwrap())
    };
    let a = canonical(&plain);
    assert_eq!(a, canonical(&deltas));
    let all = all_objects(&up);
    assert_eq!(
        a,
        encode(&closure(head, &|id| all.get(id).cloned()).unwrap())
    );
}

#[test]
fn git_clones_full_shallow_and_by_tag_over_v0_and_v2_from_the_canonical_form() {
    let dir = tempfile::tempdir().unwrap();
    let up = upstream(dir.path());
    let refs = refs_of(&up);
    let tips: Vec<&Ref> = refs.iter().collect();
    let url = serve(replayed(&up, "https://example.org/repo.git", &tips));
    let head = git(&up, &["rev-parse", "HEAD"]);
    let files = git(&up, &["ls-tree", "-r", "HEAD"]);
    for version in ["0", "2"] {
        for (name, extra) in [
            ("full", vec![]),
            ("shallow", vec!["--depth", "1"]),
            ("tag", vec!["--branch", "v1.0"]),
        ] {
            let dst = format!("clone-{version}-{name}");
            let pv = format!("protocol.version={version}");
            let mut args = vec!["-c", pv.as_str(), "clone", "-q"];
            args.extend(extra.iter().copied());
            args.extend([url.as_str(), dst.as_str()]);
            git(dir.path(), &args);
            let d = dir.path().join(&dst);
            let want = if name == "tag" {
                git(&up, &["rev-parse", "v1.0^{commit}"])
            } else {
                head.clone()
            };
            assert_eq!(git(&d, &["rev-parse", "HEAD"]), want, "{dst}");
            let tree = if name == "tag" {
                git(&up, &["ls-tree", "-r", "v1.0"])
            } else {
                files.clone()
            };
            assert_eq!(git(&d, &["ls-tree", "-r", "HEAD"]), tree, "{dst}");
            assert_eq!(
                std::fs::read_to_string(d.join("README")).unwrap(),
                if name == "tag" {
                    "version 1\n"
                } else {
                    "version 2\n"
                }
            );
            git(&d, &["fsck", "--no-dangling"]);
            if name == "full" {
                // Annotated tags arrive as the same tag objects.
                assert_eq!(
                    git(&d, &["rev-parse", "v1.0"]),
                    git(&up, &["rev-parse", "v1.0"]),
                    "{dst}"
                );
                assert_eq!(git(&d, &["cat-file", "-t", "v1.0"]).trim(), "tag");
            }
        }
    }
}

#[test]
fn git_fetches_a_sha_and_a_second_ref_and_a_miss_names_repository_and_commit() {
    let dir = tempfile::tempdir().unwrap();
    let up = upstream(dir.path());
    let refs = refs_of(&up);
    // Captured: main and stable, not the commit before stable.
    let url = serve(replayed(
        &up,
        "https://example.org/repo.git",
        &[
            tip(&refs, "refs/heads/main"),
            tip(&refs, "refs/heads/stable"),
        ],
    ));
    let stable = git(&up, &["rev-parse", "stable"]).trim().to_owned();
    let d = dir.path().join("bysha");
    std::fs::create_dir(&d).unwrap();
    git(&d, &["init", "-q"]);
    // A fetch into a repository that is not shallow must accept the
    // server's shallow boundary (`--depth`, or `--update-shallow`), as from
    // any shallow server.
    for version in ["0", "2"] {
        let pv = format!("protocol.version={version}");
        git(
            &d,
            &["-c", &pv, "fetch", "-q", "--depth", "1", &url, &stable],
        );
        assert_eq!(git(&d, &["rev-parse", "FETCH_HEAD"]).trim(), stable);
        git(
            &d,
            &[
                "-c",
                &pv,
                "fetch",
                "-q",
                "--update-shallow",
                &url,
                "refs/heads/main",
            ],
        );
        assert_eq!(
            git(&d, &["rev-parse", "FETCH_HEAD"]),
            git(&up, &["rev-parse", "main"])
        );
        git(&d, &["checkout", "-q", "FETCH_HEAD"]);
        assert_eq!(
            std::fs::read_to_string(d.join("README")).unwrap(),
            "version 2\n"
        );
    }
    let first = git(&up, &["rev-parse", "HEAD~3"]).trim().to_owned();
    for version in ["0", "2"] {
        let pv = format!("protocol.version={version}");
        let (ok, err) = git_status(&d, &["-c", &pv, "fetch", "-q", &url, &first]);
        assert!(!ok);
        assert!(
            err.contains(&format!(
                "https://example.org/repo.git at {first} was not captured"
            )),
            "{err}"
        );
    }
}

#[test]
fn an_object_that_does_not_match_its_id_is_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let up = upstream(dir.path());
    let refs = refs_of(&up);
    let mut repo = replayed(
        &up,
        "https://example.org/repo.git",
        &[tip(&refs, "refs/heads/main")],
    );
    let main = tip(&refs, "refs/heads/main").id;
    let readme = git(&up, &["rev-parse", "main:README"]);
    let readme = ObjectId::from_hex(readme.trim()).unwrap();
    repo.objects.get_mut(&readme).unwrap().data = b"tampered\n".to_vec();
    let mut req = Vec::new();
    super::pktline::write_line(&mut req, &format!("want {main} side-band-64k"));
    req.extend_from_slice(super::pktline::FLUSH);
    super::pktline::write_line(&mut req, "done");
    let err = repo.upload_pack(&req).unwrap_err().to_string();
    assert!(err.contains(&format!("object {readme} hashes to")), "{err}");
}

/// One request to the real `git http-backend` (as a CGI program); the body
/// of its answer.
fn http_backend(
    root: &Path,
    method: &str,
    path: &str,
    query: &str,
    v2: bool,
    body: &[u8],
) -> Vec<u8> {
    let mut child = git_command()
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", path)
        .env("REQUEST_METHOD", method)
        .env("QUERY_STRING", query)
        .env("CONTENT_TYPE", "application/x-git-upload-pack-request")
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_GIT_PROTOCOL", if v2 { "version=2" } else { "" })
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(body).unwrap();
    let out = child.wait_with_output().unwrap().stdout;
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    out[split + 4..].to_vec()
}

#[test]
fn what_a_real_server_answers_is_recorded_as_refs_and_the_canonical_form() {
    use super::pktline::{DELIM, FLUSH, write_line};
    use super::record::{Request, advertised_refs, fetched, ls_refs_answer, pack_of, request};
    let dir = tempfile::tempdir().unwrap();
    let up = upstream(dir.path());
    let refs = refs_of(&up);
    let all = all_objects(&up);
    let path = "/up/.git";

    let adv = http_backend(
        dir.path(),
        "GET",
        &format!("{path}/info/refs"),
        "service=git-upload-pack",
        false,
        b"",
    );
    assert_eq!(advertised_refs(&adv).unwrap(), refs);
    assert_eq!(
        advertised_refs(&http_backend(
            dir.path(),
            "GET",
            &format!("{path}/info/refs"),
            "service=git-upload-pack",
            true,
            b""
        ))
        .unwrap(),
        vec![]
    );
    let mut ls = Vec::new();
    write_line(&mut ls, "command=ls-refs");
    ls.extend_from_slice(DELIM);
    for a in ["peel", "symrefs"] {
        write_line(&mut ls, a);
    }
    ls.extend_from_slice(FLUSH);
    assert_eq!(request(&ls).unwrap(), Request::LsRefs);
    let answer = http_backend(
        dir.path(),
        "POST",
        &format!("{path}/git-upload-pack"),
        "",
        true,
        &ls,
    );
    assert_eq!(ls_refs_answer(&answer).unwrap(), refs);

    let tag = tip(&refs, "refs/tags/v1.0").id;
    let main = tip(&refs, "refs/heads/main").id;
    let want = |id: ObjectId| closure(id, &|i| all.get(i).cloned()).unwrap();
    let mut v0 = Vec::new();
    write_line(
        &mut v0,
        &format!("want {main} multi_ack_detailed side-band-64k ofs-delta"),
    );
    write_line(&mut v0, &format!("want {tag}"));
    write_line(&mut v0, "deepen 1");
    v0.extend_from_slice(FLUSH);
    write_line(&mut v0, "done");
    let mut v2 = Vec::new();
    write_line(&mut v2, "command=fetch");
    v2.extend_from_slice(DELIM);
    for l in [
        format!("want {main}"),
        format!("want {tag}"),
        "ofs-delta".into(),
        "done".into(),
    ] {
        write_line(&mut v2, &l);
    }
    v2.extend_from_slice(FLUSH);
    for (body, is_v2) in [(v0, false), (v2, true)] {
        assert_eq!(request(&body).unwrap(), Request::Fetch(vec![main, tag]));
        let answer = http_backend(
            dir.path(),
            "POST",
            &format!("{path}/git-upload-pack"),
            "",
            is_v2,
            &body,
        );
        let pack = pack_of(&answer).unwrap().expect("a pack");
        let sets = fetched(&[main, tag], &pack, &|_| None).unwrap();
        assert_eq!(sets.len(), 2);
        assert_eq!(encode(&sets[&main]), encode(&want(main)));
        assert_eq!(encode(&sets[&tag]), encode(&want(tag)));
    }
}
