//! The plugin's logic natively: a capture of what the SDK's upload-pack
//! server answers, then a replay of it, through `MemoryHost`. The real git
//! CLI and a real server are the end-to-end tests' (tests/e2e/git.rs).

use std::collections::HashMap;

use buildproxy_plugin_sdk::git::object::{Kind, Object, ObjectId};
use buildproxy_plugin_sdk::git::pktline::{DELIM, FLUSH, write_line};
use buildproxy_plugin_sdk::git::record::{fetched, pack_of};
use buildproxy_plugin_sdk::git::upload_pack::{Ref, Repository};
use buildproxy_plugin_sdk::testing::MemoryHost;
use buildproxy_plugin_sdk::{
    Body, Host, Kind as Told, Mode, Plugin, Request, RequestAction, ResponseAction, ResponseHead,
};

use super::{Git, entries};

const REPO: &str = "https://example.org/group/repo.git";

/// A commit with a tree of two files, and its objects.
fn commit(text: &str) -> (ObjectId, HashMap<ObjectId, Object>) {
    let a = Object::new(Kind::Blob, format!("a {text}\n").into_bytes());
    let b = Object::new(Kind::Blob, b"b\n".to_vec());
    let mut tree = Vec::new();
    for (name, o) in [("a", &a), ("b", &b)] {
        tree.extend_from_slice(format!("100644 {name}\0").as_bytes());
        tree.extend_from_slice(&o.id().0);
    }
    let tree = Object::new(Kind::Tree, tree);
    let c = Object::new(
        Kind::Commit,
        format!(
            "tree {}\nauthor A <a@e> 0 +0000\ncommitter A <a@e> 0 +0000\n\n{text}\n",
            tree.id()
        )
        .into_bytes(),
    );
    let id = c.id();
    let objects = [a, b, tree, c].into_iter().map(|o| (o.id(), o)).collect();
    (id, objects)
}

/// What upstream holds: `main` and a second branch.
fn upstream() -> (Repository, ObjectId, ObjectId) {
    let (main, mut objects) = commit("main");
    let (side, more) = commit("side");
    objects.extend(more);
    let refs = vec![
        Ref {
            name: "HEAD".into(),
            id: main,
            peeled: None,
            target: Some("refs/heads/main".into()),
        },
        Ref {
            name: "refs/heads/main".into(),
            id: main,
            peeled: None,
            target: None,
        },
        Ref {
            name: "refs/heads/side".into(),
            id: side,
            peeled: None,
            target: None,
        },
    ];
    let repo = Repository {
        url: REPO.into(),
        refs,
        objects,
    };
    (repo, main, side)
}

fn v2_request(command: &str, args: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    write_line(&mut out, &format!("command={command}"));
    out.extend_from_slice(DELIM);
    for a in args {
        write_line(&mut out, a);
    }
    out.extend_from_slice(FLUSH);
    out
}

fn ls_refs() -> Vec<u8> {
    v2_request(
        "ls-refs",
        &[
            "symrefs".into(),
            "peel".into(),
            "ref-prefix HEAD".into(),
            "ref-prefix refs/heads/".into(),
        ],
    )
}

fn fetch(want: ObjectId) -> Vec<u8> {
    v2_request(
        "fetch",
        &[format!("want {want}"), "ofs-delta".into(), "done".into()],
    )
}

fn post() -> Request {
    Request {
        method: "POST".into(),
        url: format!("{REPO}/git-upload-pack"),
        headers: vec![("git-protocol".into(), b"version=2".to_vec())],
        chain: Vec::new(),
    }
}

fn plugin(host: &MemoryHost, mode: Mode) -> Git {
    let mut git = Git::default();
    git.configure(host, mode, "").unwrap();
    git
}

/// One upload-pack exchange through a capturing plugin, answered by `up`.
fn capture_exchange(git: &mut Git, host: &MemoryHost, up: &Repository, body: Vec<u8>) {
    *host.state.borrow_mut() = None;
    assert_eq!(git.on_request(host, 1, post()), RequestAction::WantBody);
    assert_eq!(
        git.on_request_body(host, 1, post(), body.clone()),
        RequestAction::Pass
    );
    let head = ResponseHead {
        status: 200,
        headers: Vec::new(),
    };
    assert_eq!(
        git.on_response(host, 1, post(), head.clone()),
        ResponseAction::WantBody
    );
    let answer = up.upload_pack(&body).unwrap().body;
    assert_eq!(git.on_response_body(host, 1, post(), head, answer), None);
}

/// Replays one upload-pack request; the answer's body.
fn replay_exchange(git: &mut Git, host: &MemoryHost, body: Vec<u8>) -> (u16, Vec<u8>) {
    assert_eq!(git.on_request(host, 1, post()), RequestAction::WantBody);
    match git.on_request_body(host, 1, post(), body) {
        RequestAction::Respond(r) => match r.body {
            Body::Bytes(b) => (r.head.status, b),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_captured_fetch_replays_the_same_objects_and_refs() {
    let (up, main, side) = upstream();
    let host = MemoryHost::default();
    let mut git = plugin(&host, Mode::Capture);
    capture_exchange(&mut git, &host, &up, ls_refs());
    capture_exchange(&mut git, &host, &up, fetch(main));

    // A refs entry and one objects entry, for the want only.
    let recorded = host.representations(entries::METHOD, REPO);
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    let objects = recorded.iter().find_map(entries::wants_of).unwrap();
    assert_eq!(objects, vec![main]);

    let mut git = plugin(&host, Mode::Replay);
    // ls-refs: only what was fetched (side was advertised, never fetched).
    let (status, refs) = replay_exchange(&mut git, &host, ls_refs());
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&refs);
    assert!(
        text.contains(&format!("{main} HEAD symref-target:refs/heads/main")),
        "{text}"
    );
    assert!(text.contains(&format!("{main} refs/heads/main")), "{text}");
    assert!(!text.contains(&side.hex()), "{text}");

    let (status, answer) = replay_exchange(&mut git, &host, fetch(main));
    assert_eq!(status, 200);
    let pack = pack_of(&answer).unwrap().expect("a pack");
    let got = fetched(&[main], &pack, &|_| None).unwrap();
    let want: std::collections::BTreeMap<_, _> = up
        .objects
        .iter()
        .filter(|(_, o)| {
            let (_, main_objects) = commit("main");
            main_objects.contains_key(&o.id())
        })
        .map(|(id, o)| (*id, o.clone()))
        .collect();
    assert_eq!(got[&main], want);
    assert!(host.misses.borrow().is_empty());
}

#[test]
fn a_commit_that_was_not_captured_is_a_miss_naming_repository_and_commit() {
    let (up, main, side) = upstream();
    let host = MemoryHost::default();
    let mut git = plugin(&host, Mode::Capture);
    capture_exchange(&mut git, &host, &up, fetch(main));
    let mut git = plugin(&host, Mode::Replay);
    let (status, answer) = replay_exchange(&mut git, &host, fetch(side));
    assert_eq!(status, 200, "git shows the ERR line as a remote error");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.contains("ERR") && text.contains(&side.hex()), "{text}");
    assert_eq!(host.misses.borrow().len(), 1);
    let told = host.told.borrow();
    assert!(
        told.iter().any(|(k, url, why)| *k == Told::Missed
            && url.as_deref() == Some(REPO)
            && why.contains(&side.hex())),
        "{told:?}"
    );
}

#[test]
fn a_repository_never_captured_is_a_miss_and_other_urls_pass() {
    let host = MemoryHost::default();
    let mut git = plugin(&host, Mode::Replay);
    let (status, text) = replay_exchange(&mut git, &host, fetch(ObjectId([7; 20])));
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&text).contains(REPO));
    assert_eq!(host.misses.borrow().len(), 1);
    let plain = Request {
        method: "GET".into(),
        url: format!("{REPO}/info/refs"),
        headers: Vec::new(),
        chain: Vec::new(),
    };
    assert_eq!(git.on_request(&host, 2, plain), RequestAction::Pass);
}

#[test]
fn damaged_objects_are_never_served() {
    let (up, main, _) = upstream();
    let host = MemoryHost::default();
    let mut git = plugin(&host, Mode::Capture);
    capture_exchange(&mut git, &host, &up, fetch(main));
    for body in host.bodies.borrow_mut().values_mut() {
        let at = body.len() - 3;
        body[at] ^= 1;
    }
    let mut git = plugin(&host, Mode::Replay);
    let (status, text) = replay_exchange(&mut git, &host, fetch(main));
    assert_eq!(status, 502, "{}", String::from_utf8_lossy(&text));
    assert!(
        host.told
            .borrow()
            .iter()
            .any(|(k, _, _)| *k == Told::Failed)
    );
}

#[test]
fn entries_read_back_what_they_hold() {
    let (up, main, _) = upstream();
    let e = entries::refs(REPO, &up.refs);
    assert_eq!(entries::refs_of(&e).unwrap().len(), 3);
    assert_eq!(entries::wants_of(&e), None);
    let merged = entries::merged([up.refs.clone(), up.refs[1..].to_vec()]);
    assert_eq!(merged[0].name, "HEAD");
    assert_eq!(merged.len(), 3);
    let blob = buildproxy_plugin_sdk::Blob {
        id: "x".into(),
        size: 1,
    };
    let o = entries::objects(REPO, &[main, main], blob);
    assert_eq!(entries::wants_of(&o).unwrap(), vec![main]);
    assert_eq!(entries::refs_of(&o), None);
}

#[test]
fn an_instance_reads_a_repository_once_for_a_clone() {
    let (up, main, _) = upstream();
    let host = MemoryHost::default();
    let mut git = plugin(&host, Mode::Capture);
    capture_exchange(&mut git, &host, &up, ls_refs());
    capture_exchange(&mut git, &host, &up, fetch(main));
    let mut git = plugin(&host, Mode::Replay);
    assert_eq!(replay_exchange(&mut git, &host, ls_refs()).0, 200);
    // The bodies change under the instance: it answers from what it read
    // (and checked) before; a fresh instance reads again and refuses.
    for body in host.bodies.borrow_mut().values_mut() {
        let at = body.len() - 3;
        body[at] ^= 1;
    }
    assert_eq!(replay_exchange(&mut git, &host, fetch(main)).0, 200);
    assert_eq!(replay_exchange(&mut git, &host, fetch(main)).0, 200);
    let mut fresh = plugin(&host, Mode::Replay);
    assert_eq!(replay_exchange(&mut fresh, &host, fetch(main)).0, 502);
}

#[test]
fn the_request_filter_lets_through_every_smart_request_and_no_download() {
    let host = MemoryHost::default();
    let filter = plugin(&host, Mode::Replay).requests().unwrap();
    let get = |url: String| Request {
        method: "GET".into(),
        url,
        headers: Vec::new(),
        chain: Vec::new(),
    };
    for smart in [
        post(),
        get(format!("{REPO}/info/refs?service=git-upload-pack")),
    ] {
        assert!(buildproxy_plugin_sdk::git::http::smart_http(&smart.method, &smart.url).is_some());
        assert!(filter.matches(&smart), "{}", smart.url);
    }
    assert!(!filter.matches(&get(format!("{REPO}/archive/v1.tar.gz"))));
}
