//! How a repository is recorded, as inventory entries of method `GIT` whose
//! URL is the repository's (what the client cloned):
//!
//! - **objects**: the objects of the commits (or tags) one fetch wanted, in
//!   the SDK's canonical form (`git::objects`), keyed by those IDs
//!   (request header `git-wants`, sorted, space-separated). Its hash
//!   depends on the IDs only, so Nix can fetch it again (`git-fetch`).
//! - **refs**: what the server advertised (request header `git-refs`, a
//!   digest of the lines, so each distinct advertisement is kept), one
//!   `ls-refs` line per ref in the entry's `git-refs` header: `<id> <name>
//!   [peeled:<id>] [symref-target:<ref>]`. Ref names may hold capitals,
//!   which header names may not, so they are values.

use std::collections::BTreeMap;

use buildproxy_plugin_sdk::git::object::{Kind, ObjectId, id_of};
use buildproxy_plugin_sdk::git::upload_pack::Ref;
use buildproxy_plugin_sdk::{Blob, Entry};

pub use buildproxy_plugin_sdk::git::entry::{METHOD, REFS, WANTS};

pub fn objects(repo: &str, wants: &[ObjectId], body: Blob) -> Entry {
    let mut ids: Vec<String> = wants.iter().map(ObjectId::hex).collect();
    ids.sort();
    ids.dedup();
    Entry {
        method: METHOD.into(),
        url: repo.into(),
        fetch_url: None,
        status: 200,
        headers: Vec::new(),
        request_headers: vec![(WANTS.into(), ids.join(" "))],
        body: Some(body),
    }
}

pub fn refs(repo: &str, refs: &[Ref]) -> Entry {
    let mut lines: Vec<String> = refs.iter().map(line).collect();
    lines.sort();
    let text = lines.join("\n");
    let digest = id_of(Kind::Blob, text.as_bytes()).hex();
    Entry {
        method: METHOD.into(),
        url: repo.into(),
        fetch_url: None,
        status: 200,
        headers: vec![(REFS.into(), text)],
        request_headers: vec![(REFS.into(), digest[..16].to_owned())],
        body: None,
    }
}

fn line(r: &Ref) -> String {
    let mut s = format!("{} {}", r.id, r.name);
    if let Some(p) = r.peeled {
        s.push_str(&format!(" peeled:{p}"));
    }
    if let Some(t) = &r.target {
        s.push_str(&format!(" symref-target:{t}"));
    }
    s
}

fn header<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The IDs an objects entry holds; `None` for any other entry.
pub fn wants_of(e: &Entry) -> Option<Vec<ObjectId>> {
    buildproxy_plugin_sdk::git::entry::wants(header(&e.request_headers, WANTS)?)
}

/// The refs a refs entry holds; `None` for any other entry (or a damaged one).
pub fn refs_of(e: &Entry) -> Option<Vec<Ref>> {
    header(&e.request_headers, REFS)?;
    let text = header(&e.headers, REFS)?;
    let mut out = Vec::new();
    for l in text.lines().filter(|l| !l.is_empty()) {
        let mut parts = l.split(' ');
        let id = ObjectId::from_hex(parts.next()?).ok()?;
        let mut r = Ref {
            name: parts.next()?.to_owned(),
            id,
            peeled: None,
            target: None,
        };
        for attr in parts {
            if let Some(p) = attr.strip_prefix("peeled:") {
                r.peeled = Some(ObjectId::from_hex(p).ok()?);
            } else if let Some(t) = attr.strip_prefix("symref-target:") {
                r.target = Some(t.to_owned());
            }
        }
        out.push(r);
    }
    Some(out)
}

/// The refs of several advertisements, the first recorded winning for a
/// name, in the order a server advertises them: HEAD first, then by name.
pub fn merged(all: impl IntoIterator<Item = Vec<Ref>>) -> Vec<Ref> {
    let mut by_name: BTreeMap<String, Ref> = BTreeMap::new();
    for refs in all {
        for r in refs {
            by_name.entry(r.name.clone()).or_insert(r);
        }
    }
    let head = by_name.remove("HEAD");
    head.into_iter().chain(by_name.into_values()).collect()
}
