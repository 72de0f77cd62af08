//! An in-memory [`Host`] for testing plugin logic natively, with the same
//! put semantics as the proxy's inventory (first body wins, one entry per
//! method, URL and selecting request headers).

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::{Blob, Entry, Host, Kind, Level, PutOutcome};

/// Method, URL and the request headers that selected the representation.
type Key = (String, String, Vec<(String, String)>);

#[derive(Default)]
pub struct MemoryHost {
    pub entries: RefCell<BTreeMap<Key, Entry>>,
    pub misses: RefCell<Vec<(String, String)>>,
    pub logs: RefCell<Vec<(Level, String)>>,
    /// What `count` added, by name: pass it to `Plugin::report` as the host
    /// does at exit (see [`MemoryHost::totals`]).
    pub counters: RefCell<BTreeMap<String, u64>>,
    /// What `tell` said, in order.
    pub told: RefCell<Vec<(Kind, Option<String>, String)>>,
    /// The state of the one exchange a test plays (clear it between
    /// exchanges, as the host does).
    pub state: RefCell<Option<Vec<u8>>>,
    /// Bodies made with `put_body` (or given by a test), by blob id.
    pub bodies: RefCell<BTreeMap<String, Vec<u8>>>,
}

impl MemoryHost {
    pub fn with_entries(entries: impl IntoIterator<Item = Entry>) -> Self {
        let host = Self::default();
        for e in entries {
            let _ = host.put(e);
        }
        host
    }

    /// The counters in the form `Plugin::report` receives them.
    pub fn totals(&self) -> Vec<(String, u64)> {
        self.counters
            .borrow()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}

impl Host for MemoryHost {
    fn log(&self, level: Level, message: &str) {
        self.logs.borrow_mut().push((level, message.to_string()));
    }
    fn get(&self, method: &str, url: &str) -> Option<Entry> {
        let all = self.representations(method, url);
        all.iter()
            .find(|e| e.request_headers.is_empty())
            .or(all.first())
            .cloned()
    }
    fn representations(&self, method: &str, url: &str) -> Vec<Entry> {
        self.entries
            .borrow()
            .iter()
            .filter(|((m, u, _), _)| m == method && u == url)
            .map(|(_, e)| e.clone())
            .collect()
    }
    fn put(&self, entry: Entry) -> Result<PutOutcome, String> {
        let key = (
            entry.method.clone(),
            entry.url.clone(),
            entry.request_headers.clone(),
        );
        let mut entries = self.entries.borrow_mut();
        Ok(match entries.get(&key) {
            None => {
                entries.insert(key, entry);
                PutOutcome::Added
            }
            Some(old) if old.status == entry.status && old.body == entry.body => {
                PutOutcome::Unchanged
            }
            Some(_) => PutOutcome::Conflict,
        })
    }
    fn record_miss(&self, method: &str, url: &str) {
        self.misses
            .borrow_mut()
            .push((method.to_string(), url.to_string()));
    }
    fn put_body(&self, bytes: &[u8]) -> Result<Blob, String> {
        let blob = Blob {
            id: format!("memory-{}", self.bodies.borrow().len()),
            size: bytes.len() as u64,
        };
        self.bodies
            .borrow_mut()
            .insert(blob.id.clone(), bytes.to_vec());
        Ok(blob)
    }
    fn read_body(&self, body: &Blob) -> Result<Vec<u8>, String> {
        self.bodies
            .borrow()
            .get(&body.id)
            .cloned()
            .ok_or_else(|| format!("no body {:?} is recorded", body.id))
    }
    fn tell(&self, kind: Kind, url: Option<&str>, reason: &str) {
        self.told
            .borrow_mut()
            .push((kind, url.map(str::to_string), reason.to_string()));
    }
    fn state(&self) -> Option<Vec<u8>> {
        self.state.borrow().clone()
    }
    fn set_state(&self, data: &[u8]) -> Result<(), String> {
        if data.len() > crate::STATE_LIMIT {
            return Err(format!(
                "{} bytes of exchange state; the limit is {}",
                data.len(),
                crate::STATE_LIMIT
            ));
        }
        *self.state.borrow_mut() = Some(data.to_vec());
        Ok(())
    }
    fn count(&self, name: &str, by: u64) {
        *self
            .counters
            .borrow_mut()
            .entry(name.to_string())
            .or_default() += by;
    }
}
