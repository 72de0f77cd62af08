//! The host side of a plugin's imports: its log, the live inventory, and
//! its counters.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use super::bindings::buildproxy::plugin::{
    counters, exchange_state, inventory, log, report, requests, types,
};
use super::bindings::{Blob, Entry, Kind, Level, PutOutcome};
use super::bodies::Bodies;
use super::fault::MemoryCap;
use crate::catalog::{self, Catalog, NewEntry, Told};

/// The data of one plugin instance's `Store`.
pub struct HostState {
    pub plugin: Arc<str>,
    pub catalog: Arc<Catalog>,
    pub memory: MemoryCap,
    /// Shared by every instance of the plugin: they outlive any one of them.
    pub counters: Counters,
    /// Epoch ticks the running call may still yield before its deadline.
    pub ticks_left: u64,
    /// When the running call last resumed, for whether it rests at its
    /// next tick.
    pub pace: super::lane::Pace,
    /// The exchange whose hook is running (none in `configure`, `report`).
    pub exchange: Option<u64>,
    /// What the plugin keeps per exchange, shared by its instances.
    pub stash: Stash,
    /// Bodies plugins make and read, shared by every plugin of the chain.
    pub bodies: Arc<Bodies>,
    /// What `requests.only` asked for during `configure` (see `chain`).
    pub requests: Option<requests::Filter>,
    /// Whether it called `requests.answer-recorded` during `configure`.
    pub answers_recorded: bool,
}

/// A plugin's exchange state, by exchange id; the chain removes an
/// exchange's when it ends.
pub type Stash = Arc<Mutex<HashMap<u64, Vec<u8>>>>;

/// The most exchange state a plugin may keep (the SDK's limit).
pub const STATE_LIMIT: usize = buildproxy_plugin_sdk::STATE_LIMIT;

/// Distinct counter names one plugin may keep.
pub const MAX_COUNTERS: usize = 256;
/// Where counts under further names go; the plugin's `report` sees it.
pub const OVERFLOW: &str = "buildproxy.counters-overflow";

/// A plugin's `counters`, summed over its instances.
pub type Counters = Arc<Mutex<BTreeMap<String, u64>>>;

impl types::Host for HostState {}

impl requests::Host for HostState {
    fn only(&mut self, filter: requests::Filter) {
        // Read once, after the first instance's `configure`; a call from a
        // hook changes nothing.
        self.requests = Some(filter);
    }

    fn answer_recorded(&mut self) {
        // Read, like `only`, after the first instance's `configure`.
        self.answers_recorded = true;
    }
}

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
        self.catalog.get(&method, &url).map(super::convert::entry)
    }

    fn representations(&mut self, method: String, url: String) -> Vec<Entry> {
        self.catalog
            .representations(&method, &url)
            .into_iter()
            .map(super::convert::entry)
            .collect()
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
                request_headers: e.request_headers,
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

    fn put_body(&mut self, bytes: Vec<u8>) -> Result<Blob, String> {
        let (id, size) = self.bodies.put(&bytes)?;
        Ok(Blob { id, size })
    }

    fn read_body(&mut self, body: Blob) -> Result<Vec<u8>, String> {
        self.bodies.read(&body.id)
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

impl report::Host for HostState {
    fn tell(&mut self, kind: Kind, url: Option<String>, reason: String) {
        let kind = match kind {
            Kind::Failed => catalog::Kind::Failed,
            Kind::Missed => catalog::Kind::Missed,
            Kind::Conflict => catalog::Kind::Conflict,
            Kind::Unused => catalog::Kind::Unused,
            Kind::Note => catalog::Kind::Note,
        };
        self.catalog.tell(Told {
            kind,
            url,
            method: None,
            reason,
            by: Some(self.plugin.to_string()),
        });
    }
}

impl exchange_state::Host for HostState {
    fn get(&mut self) -> Option<Vec<u8>> {
        let id = self.exchange?;
        self.stash.lock().unwrap().get(&id).cloned()
    }

    fn set(&mut self, data: Vec<u8>) -> Result<(), String> {
        let Some(id) = self.exchange else {
            return Err("no exchange is running: state is kept only in exchange hooks".into());
        };
        if data.len() > STATE_LIMIT {
            return Err(format!(
                "{} bytes of exchange state; the limit is {STATE_LIMIT}",
                data.len()
            ));
        }
        self.stash.lock().unwrap().insert(id, data);
        Ok(())
    }
}
