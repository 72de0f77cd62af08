//! The glue between the component's exports/imports and a [`Plugin`].
//! Compiled only for wasm; everything else in the SDK is plain Rust.

use std::cell::RefCell;

use crate::bindings::buildproxy::plugin::{
    counters, exchange_state, inventory, log, report, requests,
};
use crate::bindings::exports::buildproxy::plugin::hooks::Guest;
use crate::{
    Blob, Entry, Exchange, Hooks, Host, Kind, Level, Mode, Plugin, PutOutcome, Request,
    RequestAction, ResponseAction, ResponseHead,
};

unsafe extern "Rust" {
    /// Defined by `export_plugin!` in the plugin crate.
    fn __buildproxy_new_plugin() -> Box<dyn Plugin>;
}

thread_local! {
    static PLUGIN: RefCell<Option<Box<dyn Plugin>>> = const { RefCell::new(None) };
}

struct Imports;

impl Host for Imports {
    fn log(&self, level: Level, message: &str) {
        log::log(level, message)
    }
    fn get(&self, method: &str, url: &str) -> Option<Entry> {
        inventory::get(method, url)
    }
    fn representations(&self, method: &str, url: &str) -> Vec<Entry> {
        inventory::representations(method, url)
    }
    fn put(&self, entry: Entry) -> Result<PutOutcome, String> {
        inventory::put(&entry)
    }
    fn record_miss(&self, method: &str, url: &str) {
        inventory::record_miss(method, url)
    }
    fn put_body(&self, bytes: &[u8]) -> Result<Blob, String> {
        inventory::put_body(bytes)
    }
    fn read_body(&self, body: &Blob) -> Result<Vec<u8>, String> {
        inventory::read_body(body)
    }
    fn count(&self, name: &str, by: u64) {
        counters::add(name, by)
    }
    fn tell(&self, kind: Kind, url: Option<&str>, reason: &str) {
        report::tell(kind, url, reason)
    }
    fn state(&self) -> Option<Vec<u8>> {
        exchange_state::get()
    }
    fn set_state(&self, data: &[u8]) -> Result<(), String> {
        exchange_state::set(data)
    }
}

fn with<R>(f: impl FnOnce(&mut dyn Plugin) -> R) -> R {
    PLUGIN.with(|cell| {
        let mut slot = cell.borrow_mut();
        // SAFETY: `export_plugin!` defines the symbol with this signature.
        let plugin = slot.get_or_insert_with(|| unsafe { __buildproxy_new_plugin() });
        f(plugin.as_mut())
    })
}

pub struct Adapter;

impl Guest for Adapter {
    fn configure(mode: Mode, config: String) -> Result<Hooks, String> {
        with(|p| {
            p.configure(&Imports, mode, &config)?;
            if let Some(filter) = p.requests() {
                requests::only(&filter);
            }
            if p.answers_recorded() {
                requests::answer_recorded();
            }
            Ok(p.hooks())
        })
    }
    fn on_request(id: u64, req: Request) -> RequestAction {
        with(|p| p.on_request(&Imports, id, req))
    }
    fn on_request_body(id: u64, req: Request, body: Vec<u8>) -> RequestAction {
        with(|p| p.on_request_body(&Imports, id, req, body))
    }
    fn on_response(id: u64, req: Request, head: ResponseHead) -> ResponseAction {
        with(|p| p.on_response(&Imports, id, req, head))
    }
    fn on_response_body(
        id: u64,
        req: Request,
        head: ResponseHead,
        body: Vec<u8>,
    ) -> Option<Vec<u8>> {
        with(|p| p.on_response_body(&Imports, id, req, head, body))
    }
    fn on_complete(id: u64, summary: Exchange) {
        with(|p| p.on_complete(&Imports, id, summary))
    }
    fn report(counters: Vec<(String, u64)>) -> Vec<String> {
        with(|p| p.report(&Imports, counters))
    }
}
