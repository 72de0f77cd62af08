//! The host side of a plugin's imports: its log, the live inventory, and
//! its counters.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::bindings::buildproxy::plugin::{counters, inventory, log, types};
use super::bindings::{Entry, Level, PutOutcome};
use super::fault::MemoryCap;
use crate::catalog::{self, Catalog, NewEntry};

/// The data of one plugin instance's `Store`.
pub struct HostState {
    pub plugin: Arc<str>,
    pub catalog: Arc<Catalog>,
    pub memory: MemoryCap,
    /// Shared by every instance of the plugin: they outlive any one of them.
    pub counters: Counters,
    /// Epoch ticks the running call may still yield before its deadline.
    pub ticks_left: u64,
}

/// A plugin's `counters`, summed over its instances.
pub type Counters = Arc<Mutex<BTreeMap<String, u64>>>;

impl types::Host for HostState {}

impl log::Host for HostState {
    fn log(&mut self, level: Level, message: String) {
        let plugin = &*self.plugin;
        match level {
            Level::Error => tracing::error!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
        }
    }
}

impl inventory::Host for HostState {
    fn get(&mut self, method: String, url: String) -> Option<Entry> {
        let e = self.catalog.get(&method, &url)?;
        Some(Entry {
            body: e.body.as_ref().map(|b| types::Blob {
                id: catalog::blob_id(b),
                size: b.size.unwrap_or(0),
            }),
            method: e.method,
            url: e.url,
            fetch_url: e.fetch_url,
            status: e.status,
            headers: e.headers.into_iter().collect(),
        })
    }

    fn put(&mut self, e: Entry) -> Result<PutOutcome, String> {
        let outcome = self
            .catalog
            .put(NewEntry {
                method: e.method,
                url: e.url,
                fetch_url: e.fetch_url,
                status: e.status,
                headers: e.headers,
                body: e.body.map(|b| b.id),
            })
            .map_err(|e| e.to_string())?;
        Ok(match outcome {
            catalog::PutOutcome::Added => PutOutcome::Added,
            catalog::PutOutcome::Unchanged => PutOutcome::Unchanged,
            catalog::PutOutcome::Conflict => PutOutcome::Conflict,
        })
    }

    fn record_miss(&mut self, method: String, url: String) {
        self.catalog.record_miss(&method, &url)
    }
}

impl counters::Host for HostState {
    fn add(&mut self, name: String, by: u64) {
        let mut counters = self.counters.lock().unwrap();
        let n = counters.entry(name).or_default();
        *n = n.saturating_add(by);
    }
}
