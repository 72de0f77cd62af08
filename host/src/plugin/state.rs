//! The host side of a plugin's imports: its log, the live inventory, and
//! its counters.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use wasmtime::StoreLimits;

use super::bindings::buildproxy::plugin::{counters, inventory, log, types};
use super::bindings::{Entry, Level, PutOutcome};
use crate::catalog::Catalog;

/// The data of one plugin instance's `Store`.
pub struct HostState {
    pub plugin: Arc<str>,
    pub catalog: Arc<Catalog>,
    pub limits: StoreLimits,
    /// Shared by every instance of the plugin: they outlive any one of them.
    pub counters: Counters,
}

/// Distinct counter names one plugin may keep.
pub const MAX_COUNTERS: usize = 256;
/// Where counts under further names go; the plugin's `report` sees it.
pub const OVERFLOW: &str = "buildproxy.counters-overflow";

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
        self.catalog.get(&method, &url)
    }

    fn representations(&mut self, method: String, url: String) -> Vec<Entry> {
        self.catalog.representations(&method, &url)
    }

    fn put(&mut self, e: Entry) -> Result<PutOutcome, String> {
        self.catalog.put(e)
    }

    fn record_miss(&mut self, method: String, url: String) {
        self.catalog.record_miss(&method, &url)
    }
}

impl counters::Host for HostState {
    fn add(&mut self, name: String, by: u64) {
        let mut counters = self.counters.lock().unwrap();
        // Names are the plugin's to choose (a URL in one would make one per
        // request): past the cap, new names are summed under one.
        let name = if counters.len() >= MAX_COUNTERS && !counters.contains_key(&name) {
            OVERFLOW.to_string()
        } else {
            name
        };
        let n = counters.entry(name).or_default();
        *n = n.saturating_add(by);
    }
}
