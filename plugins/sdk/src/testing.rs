//! An in-memory [`Host`] for testing plugin logic natively, with the same
//! put semantics as the proxy's inventory (first body wins, one entry per
//! method, URL and selecting request headers).

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::{Entry, Host, Level, PutOutcome};

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
    fn count(&self, name: &str, by: u64) {
        *self
            .counters
            .borrow_mut()
            .entry(name.to_string())
            .or_default() += by;
    }
}
