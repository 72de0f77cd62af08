//! Capture: what a fetch brought becomes the canonical objects of what it
//! wanted, and what the server advertised becomes a refs entry.

use std::collections::BTreeMap;

use buildproxy_plugin_sdk::git::GitError;
use buildproxy_plugin_sdk::git::object::{Object, ObjectId};
use buildproxy_plugin_sdk::git::{objects, record};
use buildproxy_plugin_sdk::{Host, Kind, Level};

use crate::entries;

/// What the request of an upload-pack exchange was, kept from its body to
/// its answer (exchange state).
#[derive(Debug, PartialEq, Eq)]
pub enum Asked {
    LsRefs,
    Fetch(Vec<ObjectId>),
}

impl Asked {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Asked::LsRefs => b"ls-refs".to_vec(),
            Asked::Fetch(ids) => {
                let ids: Vec<String> = ids.iter().map(ObjectId::hex).collect();
                format!("fetch {}", ids.join(" ")).into_bytes()
            }
        }
    }

    pub fn decode(bytes: &[u8]) -> Option<Asked> {
        let text = std::str::from_utf8(bytes).ok()?;
        if text == "ls-refs" {
            return Some(Asked::LsRefs);
        }
        let ids = text.strip_prefix("fetch")?.split_whitespace();
        ids.map(|h| ObjectId::from_hex(h).ok())
            .collect::<Option<_>>()
            .map(Asked::Fetch)
    }

    pub fn of_request(body: &[u8]) -> Result<Asked, GitError> {
        Ok(match record::request(body)? {
            record::Request::LsRefs => Asked::LsRefs,
            // A clone wants HEAD and the branch it names: the same ID twice.
            record::Request::Fetch(mut ids) => {
                ids.sort();
                ids.dedup();
                Asked::Fetch(ids)
            }
        })
    }
}

/// Records the refs of an advertisement (v0) or an `ls-refs` answer.
pub fn refs(host: &dyn Host, repo: &str, answer: &[u8], ls_refs: bool) {
    let refs = if ls_refs {
        record::ls_refs_answer(answer)
    } else {
        record::advertised_refs(answer)
    };
    match refs {
        // A v2 capability advertisement has none; `ls-refs` brings them.
        Ok(refs) if refs.is_empty() => {}
        Ok(refs) => {
            if let Err(e) = host.put(entries::refs(repo, &refs)) {
                host.log(
                    Level::Error,
                    &format!("could not record the refs of {repo}: {e}"),
                );
            }
        }
        Err(e) => host.tell(
            Kind::Failed,
            Some(repo),
            &format!("git: the server's refs could not be read ({e}); replay will not know them"),
        ),
    }
}

/// Records the objects of the commits a fetch wanted, from the pack in its
/// answer. A thin pack or an incremental fetch is completed from what
/// earlier fetches of the repository recorded in this run (the host keeps
/// those bodies for the run, in `--store` or a private spool).
pub fn fetch(host: &dyn Host, repo: &str, wants: &[ObjectId], answer: &[u8]) {
    let fail = |why: String| host.tell(Kind::Failed, Some(repo), &format!("git: {why}"));
    let pack = match record::pack_of(answer) {
        Ok(Some(pack)) => pack,
        // A negotiation round: the pack comes in a later answer.
        Ok(None) => return,
        Err(e) => return fail(format!("the fetch of {} failed: {e}", list(wants))),
    };
    // A thin pack's deltas and an incremental fetch's closures need objects
    // the client already had: those an earlier fetch recorded.
    let mut sets = record::fetched(wants, &pack, &|_| None);
    if !matches!(&sets, Ok(s) if s.len() == wants.len()) {
        let known = recorded_objects(host, repo);
        if !known.is_empty() {
            sets = record::fetched(wants, &pack, &|id| known.get(id).cloned());
        }
    }
    let sets = match sets {
        Ok(sets) => sets,
        Err(GitError::Missing(_)) => BTreeMap::new(),
        Err(e) => {
            return fail(format!(
                "the pack for {} could not be read: {e}",
                list(wants)
            ));
        }
    };
    let (done, partial): (Vec<ObjectId>, Vec<ObjectId>) =
        wants.iter().partition(|w| sets.contains_key(w));
    if !partial.is_empty() {
        host.tell(
            Kind::Failed,
            Some(repo),
            &format!(
                "git: the fetch of {} brought only what the client lacked (an incremental \
                 fetch), and what it lacks was not recorded by an earlier fetch of this run, \
                 so it cannot be recorded whole; capture from a fresh clone",
                list(&partial)
            ),
        );
    }
    if done.is_empty() {
        return;
    }
    let mut union = BTreeMap::new();
    for set in sets.into_values() {
        union.extend(set);
    }
    let bytes = objects::encode(&union);
    let blob = match host.put_body(&bytes) {
        Ok(blob) => blob,
        Err(e) => return fail(format!("the objects of {} were not kept: {e}", list(&done))),
    };
    if let Err(e) = host.put(entries::objects(repo, &done, blob)) {
        fail(format!(
            "the objects of {} were not recorded: {e}",
            list(&done)
        ));
    }
}

/// Every object recorded for `repo` so far that this run can read.
fn recorded_objects(host: &dyn Host, repo: &str) -> BTreeMap<ObjectId, Object> {
    let mut out = BTreeMap::new();
    for e in host.representations(entries::METHOD, repo) {
        let Some(blob) = e.body.as_ref().filter(|_| entries::wants_of(&e).is_some()) else {
            continue;
        };
        if let Ok(set) = host.read_body(blob).map(|b| objects::decode(&b)) {
            out.extend(set.unwrap_or_default());
        }
    }
    out
}

pub use buildproxy_plugin_sdk::git::record::list;
