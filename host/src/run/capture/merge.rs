//! `--merge` and recovery: the previous entries updated by this run's,
//! and what changed, for the summary.

use std::collections::BTreeMap;

use crate::inventory::Entry;
use crate::inventory::index::{Index, Insert, normalize_url};

/// What `merge` made of the previous file and this run.
#[derive(Debug)]
pub(super) struct Merged {
    pub entries: Vec<Entry>,
    /// Entries the previous file did not have.
    pub new: usize,
    /// URLs this run recorded with another status or hash than before.
    pub changed: Vec<String>,
    /// Previous entries left as they were (captured again alike, or not at all).
    pub kept: usize,
    /// URLs the previous file records twice with different answers.
    pub conflicting: Vec<String>,
}

/// The previous entries, updated by this run's: new requests (or new
/// representations of one) are added, an entry whose recorded status or
/// hash changed takes the new one and is reported. Within the previous
/// file, a request recorded twice keeps its first recording, as capture
/// keeps the first answer it saw (the same [`Index`] rule), and differing
/// duplicates are reported.
pub(super) fn merge(previous: Vec<Entry>, captured: Vec<Entry>) -> Merged {
    let mut old = Index::new();
    let mut conflicting = Vec::new();
    for e in previous {
        let url = e.url.clone();
        if let Insert::Conflict { .. } = old.insert(e) {
            conflicting.push(url);
        }
    }
    let key = |e: &Entry| {
        (
            normalize_url(&e.url),
            e.method.to_ascii_uppercase(),
            e.request_headers.clone(),
        )
    };
    let mut all: BTreeMap<_, Entry> = old.iter().map(|e| (key(e), e.clone())).collect();
    let before = all.len();
    let (mut new, mut changed) = (0, Vec::new());
    for e in captured {
        match all.get(&key(&e)) {
            None => new += 1,
            Some(old) => {
                let hash = |e: &Entry| e.body.as_ref().and_then(|b| b.hash.clone());
                if old.status != e.status || hash(old) != hash(&e) {
                    changed.push(e.url.clone());
                }
            }
        }
        all.insert(key(&e), e);
    }
    Merged {
        entries: all.into_values().collect(),
        new,
        kept: before - changed.len(),
        changed,
        conflicting,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Body;

    fn entry(url: &str, hash: &str, accept: Option<&str>) -> Entry {
        let body = Body {
            hash: Some(hash.into()),
            size: None,
            file: None,
        };
        Entry {
            request_headers: accept
                .map(|a| BTreeMap::from([("accept".to_string(), a.to_string())]))
                .unwrap_or_default(),
            ..Entry::get_200(url, body)
        }
    }

    #[test]
    fn merge_counts_new_changed_and_kept_separately_per_representation() {
        let previous = vec![
            entry("https://e.org/a", "h1", None),
            entry("https://e.org/b", "h2", None),
            entry("https://e.org/c", "h3", None),
        ];
        let captured = vec![
            entry("https://e.org/a", "h1", None),
            entry("https://e.org/b", "h2-new", None),
            entry("https://e.org/a", "json", Some("application/json")),
            entry("https://e.org/d", "h4", None),
        ];
        let m = merge(previous, captured);
        assert_eq!((m.new, m.changed.len(), m.kept), (2, 1, 2), "{m:?}");
        assert_eq!(m.changed, ["https://e.org/b"]);
        assert_eq!(m.entries.len(), 5);
    }
}
