//! The live inventory of one run: the recorded entries (indexed), the bodies
//! plugins may name, and what was missed. Plugins reach it through the
//! `inventory` import; the proxy reaches it to serve blobs and to report.
//!
//! A plugin names a body only by an id this catalog issued: replay can serve
//! nothing but files the content named.
//!
//! It also keeps what the user must be told at the end of the run (failed
//! downloads, conflicts, notes), from the host and from plugins alike, each
//! (kind, URL) once: the summary lists a failed download once, however many
//! parts of the proxy saw it fail.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use crate::inventory::index::{Index, Insert};
use crate::inventory::journal::Journal;
use crate::inventory::prepared::Prepared;
use crate::inventory::{Body, Entry};

/// A body the host can serve or record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    pub file: Option<PathBuf>,
    pub size: u64,
    /// SRI SHA-256, when known.
    pub hash: Option<String>,
}

/// An entry to record, its body named by the id the catalog issued.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub method: String,
    pub url: String,
    pub fetch_url: Option<String>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The request headers that selected this representation (content
    /// negotiation); part of the match key.
    pub request_headers: Vec<(String, String)>,
    pub body: Option<String>,
}

/// What recording an entry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Added,
    /// The same URL with the same status and body was already recorded.
    Unchanged,
    /// The same URL was recorded with another body or status; the first
    /// one is kept.
    Conflict,
}

/// What a line of the end-of-run summary is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// The build did not get a download whole.
    Failed,
    /// A request the recorded content cannot answer.
    Missed,
    /// Two answers for one URL; the first is kept.
    Conflict,
    /// Something asked for that did not happen (a rule that matched nothing).
    Unused,
    Note,
}

/// One thing the user is told, once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Told {
    pub kind: Kind,
    pub url: Option<String>,
    /// The method, when the host saw the exchange itself.
    pub method: Option<String>,
    pub reason: String,
    /// Who said it: a plugin's name, or `None` for the host.
    pub by: Option<String>,
}

impl std::fmt::Display for Told {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(m) = &self.method {
            write!(f, "{m} ")?;
        }
        if let Some(url) = &self.url {
            write!(f, "{url}: ")?;
        }
        write!(f, "{}", self.reason)?;
        if let Some(by) = &self.by {
            write!(f, " ({by})")?;
        }
        Ok(())
    }
}

/// A body id the catalog never issued.
#[derive(Debug, Clone, thiserror::Error)]
#[error("body {0:?} was not issued by the host")]
pub struct UnknownBlob(pub String);

#[derive(Default, Debug)]
pub struct Stats {
    pub added: AtomicU64,
    pub added_bytes: AtomicU64,
    pub unchanged: AtomicU64,
    pub conflicts: AtomicU64,
    pub errors: AtomicU64,
    /// Exchanges answered by upstream in full: what capture could record.
    pub completed: AtomicU64,
}

/// At most this many misses and errors are kept (and printed) one by one;
/// past it they are only counted: a build that misses 10,000 URLs must not
/// make the proxy grow or flood the log.
pub const KEPT: usize = 1000;

#[derive(Default)]
pub struct Catalog {
    index: RwLock<Index>,
    blobs: RwLock<HashMap<String, BlobRef>>,
    misses: Mutex<BTreeSet<(String, String)>>,
    /// By (kind, URL): the first thing said about it is kept.
    told: Mutex<BTreeMap<(Kind, String), (u64, Told)>>,
    /// Transfers the client stopped reading: (method, URL, why).
    abandoned: Mutex<Vec<(String, String, String)>>,
    /// Misses and errors past [`KEPT`]: counted, not kept.
    pub misses_dropped: AtomicU64,
    pub errors_dropped: AtomicU64,
    pub stats: Stats,
    /// Print one line per recorded entry (capture).
    pub announce: bool,
    /// Where each recorded entry is made durable at once (capture).
    journal: Mutex<Option<Journal>>,
    /// Replay's content when prepared: looked up per request, never loaded
    /// whole (see inventory::prepared).
    prepared: Option<Prepared>,
}

impl Catalog {
    pub fn from_entries(entries: Vec<Entry>) -> Self {
        let catalog = Self::default();
        {
            let mut index = catalog.index.write().unwrap();
            let mut blobs = catalog.blobs.write().unwrap();
            for entry in entries {
                if let Some(body) = &entry.body {
                    blobs.insert(blob_id(body), blob_ref(body));
                }
                index.insert(entry);
            }
        }
        catalog
    }

    /// A catalog answering from a prepared content index.
    pub fn from_prepared(prepared: Prepared) -> Self {
        Self {
            prepared: Some(prepared),
            ..Self::default()
        }
    }

    /// An empty catalog for capture: it prints one line per recorded entry
    /// and appends it to the journal.
    pub fn for_capture(journal: Option<Journal>) -> Self {
        Self {
            announce: true,
            journal: Mutex::new(journal),
            ..Self::default()
        }
    }

    /// The journal, for closing once the output file is written.
    pub fn take_journal(&self) -> Option<Journal> {
        self.journal.lock().unwrap().take()
    }

    pub fn len(&self) -> usize {
        self.index.read().unwrap().len() + self.prepared.as_ref().map_or(0, Prepared::len)
    }

    /// Makes a body the host streamed nameable by plugins; returns its id.
    pub fn register_blob(&self, blob: BlobRef) -> String {
        let id = blob.hash.clone().unwrap_or_else(|| {
            format!(
                "file:{}",
                blob.file
                    .as_ref()
                    .map(|f| f.display().to_string())
                    .unwrap_or_default()
            )
        });
        self.blobs
            .write()
            .unwrap()
            .entry(id.clone())
            .or_insert(blob);
        id
    }

    pub fn blob(&self, id: &str) -> Option<BlobRef> {
        self.blobs.read().unwrap().get(id).cloned()
    }

    /// The entry a request matches (URL normalised by the index): the one
    /// no request header selected, else the first representation.
    pub fn get(&self, method: &str, url: &str) -> Option<Entry> {
        let found = self.index.read().unwrap().get(method, url).cloned();
        found.or_else(|| {
            let all = self.prepared_candidates(method, url);
            all.iter()
                .find(|e| e.request_headers.is_empty())
                .or(all.first())
                .cloned()
        })
    }

    /// Every representation of `method url` (content negotiation).
    pub fn representations(&self, method: &str, url: &str) -> Vec<Entry> {
        let found: Vec<Entry> = {
            let index = self.index.read().unwrap();
            // Replay from a prepared file: the index is empty, and
            // normalising the URL for it would be wasted.
            if index.is_empty() {
                Vec::new()
            } else {
                index.representations(method, url).cloned().collect()
            }
        };
        if found.is_empty() {
            self.prepared_candidates(method, url)
        } else {
            found
        }
    }

    /// The prepared entries for `method url` (its representations), their
    /// bodies made nameable as loading would have; a damaged record or a
    /// body outside the allowed roots is this request's error (the message
    /// names the file, the entry and the fix). A body deleted or changed
    /// since it was prepared fails when it is served (`verify::open`), naming
    /// the body's file.
    fn prepared_candidates(&self, method: &str, url: &str) -> Vec<Entry> {
        let Some(prepared) = self.prepared.as_ref() else {
            return Vec::new();
        };
        match prepared.candidates(method, url) {
            Ok(entries) => {
                let bodies = entries.iter().filter_map(|e| e.body.as_ref());
                // Known already (a URL asked for again): a read lock.
                let known = {
                    let blobs = self.blobs.read().unwrap();
                    bodies.clone().all(|b| blobs.contains_key(&blob_id(b)))
                };
                if !known {
                    let mut blobs = self.blobs.write().unwrap();
                    for body in bodies {
                        blobs.entry(blob_id(body)).or_insert_with(|| blob_ref(body));
                    }
                }
                entries
            }
            Err(err) => {
                // Once per damaged record: the host's answer for a plugin
                // (`requests.answer-recorded`) and the plugin's own lookup
                // may both read it for one request.
                if self.record_error(err.to_string()) {
                    eprintln!("buildproxy: error: {err}");
                }
                Vec::new()
            }
        }
    }

    /// Records an entry whose body is named by an id this catalog issued.
    pub fn put(&self, e: NewEntry) -> Result<PutOutcome, UnknownBlob> {
        let body = match &e.body {
            None => None,
            Some(id) => {
                let known = self.blob(id).ok_or_else(|| UnknownBlob(id.clone()))?;
                Some(Body {
                    hash: known.hash,
                    size: Some(known.size),
                    file: known.file,
                })
            }
        };
        let size = body.as_ref().and_then(|b| b.size);
        let entry = Entry {
            method: e.method.to_ascii_uppercase(),
            url: e.url,
            fetch_url: e.fetch_url,
            name: None,
            status: e.status,
            headers: e
                .headers
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
            request_headers: e
                .request_headers
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
            body,
        };
        let selected = selected_by(&entry.request_headers);
        let (status, url) = (entry.status, entry.url.clone());
        let journaled = self
            .journal
            .lock()
            .unwrap()
            .is_some()
            .then(|| entry.clone());
        let outcome = self.index.write().unwrap().insert(entry);
        Ok(match outcome {
            Insert::Added => {
                if let (Some(e), Some(j)) = (&journaled, &*self.journal.lock().unwrap()) {
                    j.append(e);
                }
                self.stats.added.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .added_bytes
                    .fetch_add(size.unwrap_or(0), Ordering::Relaxed);
                if self.announce {
                    eprintln!(
                        "buildproxy: {status} {:>10} {url}{selected}",
                        human_size(size)
                    );
                }
                PutOutcome::Added
            }
            Insert::Unchanged => {
                self.stats.unchanged.fetch_add(1, Ordering::Relaxed);
                PutOutcome::Unchanged
            }
            Insert::Conflict { .. } => {
                self.stats.conflicts.fetch_add(1, Ordering::Relaxed);
                PutOutcome::Conflict
            }
        })
    }

    pub fn record_miss(&self, method: &str, url: &str) {
        let mut misses = self.misses.lock().unwrap();
        let key = (method.to_string(), url.to_string());
        if misses.len() >= KEPT && !misses.contains(&key) {
            if self.misses_dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                eprintln!("buildproxy: more than {KEPT} misses: the rest are counted, not printed");
            }
            return;
        }
        eprintln!("buildproxy: MISS {method} {url}");
        misses.insert(key);
    }

    pub fn misses(&self) -> Vec<(String, String)> {
        self.misses.lock().unwrap().iter().cloned().collect()
    }

    /// An exchange the host saw fail (upstream error, plugin fault, the
    /// content store): for the summary.
    pub fn record_failure(&self, method: &str, url: &str, reason: String) {
        self.tell(Told {
            kind: Kind::Failed,
            url: Some(url.to_string()),
            method: Some(method.to_string()),
            reason,
            by: None,
        });
    }

    /// A failure that names no URL (a damaged content record).
    /// Whether it is new: the summary lists each error once.
    pub fn record_error(&self, what: String) -> bool {
        self.tell(Told {
            kind: Kind::Failed,
            url: None,
            method: None,
            reason: what,
            by: None,
        })
    }

    /// The failures, as the summary prints them.
    pub fn errors(&self) -> Vec<String> {
        self.failures().iter().map(ToString::to_string).collect()
    }

    /// Keeps a line for the summary, unless one of its kind was kept for
    /// its URL (or, without one, its reason) already. Past [`KEPT`] lines
    /// they are counted, not kept. Whether it was new (kept or counted).
    pub fn tell(&self, told: Told) -> bool {
        let mut all = self.told.lock().unwrap();
        let about = told.url.clone().unwrap_or_else(|| told.reason.clone());
        let order = all.len() as u64;
        let full = all.len() >= KEPT;
        let std::collections::btree_map::Entry::Vacant(slot) = all.entry((told.kind, about)) else {
            return false;
        };
        if told.kind == Kind::Failed {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
        if full {
            self.errors_dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            slot.insert((order, told));
        }
        true
    }

    /// What the summary says, in the order it was first said.
    pub fn told(&self) -> Vec<Told> {
        let all = self.told.lock().unwrap();
        let mut lines: Vec<_> = all.values().cloned().collect();
        lines.sort_by_key(|(order, _)| *order);
        lines.into_iter().map(|(_, t)| t).collect()
    }

    /// The failed downloads, each once.
    pub fn failures(&self) -> Vec<Told> {
        self.told()
            .into_iter()
            .filter(|t| t.kind == Kind::Failed)
            .collect()
    }

    /// A body the client stopped reading (its own choice: uv reads a
    /// wheel's metadata from the start of a body and hangs up).
    pub fn record_abandoned(&self, method: &str, url: &str, why: &str) {
        self.abandoned
            .lock()
            .unwrap()
            .push((method.into(), url.into(), why.into()));
    }

    /// The abandoned transfers no other request of the run completed: the
    /// body was never recorded, so replay will miss it. Each once.
    pub fn abandoned_unrecorded(&self) -> Vec<String> {
        let index = self.index.read().unwrap();
        let mut seen = BTreeSet::new();
        self.abandoned
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, u, _)| index.get(m, u).is_none() && seen.insert((m.clone(), u.clone())))
            .map(|(m, u, why)| {
                format!(
                    "{m} {u}: {why}, and no request of this run downloaded it whole, so it is \
                     not recorded and replay will miss it; if the build needs it, make it \
                     download the whole file"
                )
            })
            .collect()
    }

    pub fn entries(&self) -> Vec<Entry> {
        self.index.read().unwrap().entries_sorted()
    }
}

/// ` (accept: …)` after a recorded URL whose representation was negotiated.
pub fn selected_by(request_headers: &BTreeMap<String, String>) -> String {
    if request_headers.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> = request_headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    format!(" ({})", pairs.join("; "))
}

/// The id plugins name a recorded body by: its hash, or its file when the
/// hash is unknown.
pub fn blob_id(body: &Body) -> String {
    match (&body.hash, &body.file) {
        (Some(h), _) => h.clone(),
        // On every replayed request: built by hand, not by `format!`.
        (None, Some(f)) => ["file:", &f.to_string_lossy()].concat(),
        (None, None) => String::new(),
    }
}

fn blob_ref(body: &Body) -> BlobRef {
    BlobRef {
        file: body.file.clone(),
        size: body.size.unwrap_or(0),
        hash: body.hash.clone(),
    }
}

pub fn human_size(size: Option<u64>) -> String {
    match size {
        None => "-".into(),
        Some(n) if n < 1024 => format!("{n} B"),
        Some(n) if n < 1 << 20 => format!("{:.1} KiB", n as f64 / 1024.0),
        Some(n) if n < 1 << 30 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        Some(n) => format!("{:.2} GiB", n as f64 / (1u64 << 30) as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_download_is_listed_once_with_what_was_said_first() {
        let c = Catalog::default();
        let url = "https://a.test/x";
        c.record_failure("GET", url, "upstream reset".into());
        let again = c.tell(Told {
            kind: Kind::Failed,
            url: Some(url.into()),
            method: None,
            reason: "not recorded: upstream reset".into(),
            by: Some("capture".into()),
        });
        assert!(!again, "told already");
        c.tell(Told {
            kind: Kind::Note,
            url: Some(url.into()),
            method: None,
            reason: "served as recorded".into(),
            by: Some("redirect".into()),
        });
        let failures = c.failures();
        assert_eq!(failures.len(), 1);
        assert_eq!(
            failures[0].to_string(),
            "GET https://a.test/x: upstream reset"
        );
        assert_eq!(c.stats.errors.load(Ordering::Relaxed), 1);
        assert_eq!(c.told().len(), 2);
    }

    /// The caller prints an error only when it is new.
    #[test]
    fn an_error_recorded_again_says_it_is_not_new() {
        let c = Catalog::default();
        assert!(c.record_error("a damaged record".into()));
        assert!(!c.record_error("a damaged record".into()));
        assert_eq!(c.errors(), ["a damaged record"]);
    }
}
