//! Write a buildproxy plugin as plain Rust.
//!
//! A plugin is a type implementing [`Plugin`]; every method has a "no
//! opinion" default, so implement only the hooks you need. Its logic talks to
//! the proxy through the [`Host`] trait, which the wasm glue implements with
//! the real imports and a native test implements with [`testing::MemoryHost`].
//! [`export_plugin!`] is the only wasm-specific line a plugin writes:
//!
//! ```ignore
//! #[derive(Default)]
//! struct Pin;
//! impl buildproxy_plugin_sdk::Plugin for Pin { /* hooks */ }
//! buildproxy_plugin_sdk::export_plugin!(Pin);
//! ```
//!
//! Build with `cargo build --target wasm32-unknown-unknown --release` and wrap
//! with `buildproxy component` (see docs/plugins.md).

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "plugin",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_hooks",
        default_bindings_module: "buildproxy_plugin_sdk::bindings",
        additional_derives: [PartialEq, Eq],
    });
}

pub mod alloc;
pub mod git;
pub mod headers;
pub mod location;
pub mod negotiation;
pub mod record;
pub mod testing;
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod wasm;

pub use bindings::buildproxy::plugin::inventory::{Entry, PutOutcome};
pub use bindings::buildproxy::plugin::log::Level;
pub use bindings::buildproxy::plugin::report::Kind;
pub use bindings::buildproxy::plugin::requests::Filter as RequestFilter;
pub use bindings::buildproxy::plugin::types::{
    Blob, Body, Exchange, Headers, Mode, Request, Response, ResponseHead, Source,
};
pub use bindings::exports::buildproxy::plugin::hooks::{
    HooksWanted as Hooks, RequestAction, ResponseAction,
};

impl RequestFilter {
    /// Whether `on_request` is called for `req` (the host's rule, for a
    /// plugin's tests to check that its filter covers what it handles).
    pub fn matches(&self, req: &Request) -> bool {
        filter_matches(&self.url_contains, self.in_chain, &req.url, &req.chain)
    }
}

/// The rule of `requests.only` (wit/plugin.wit) on the filter's and the
/// request's fields: one definition for the host, which holds its own
/// binding types, and for [`RequestFilter::matches`].
pub fn filter_matches(
    url_contains: &[String],
    in_chain: bool,
    url: &str,
    chain: &[String],
) -> bool {
    (in_chain && !chain.is_empty()) || url_contains.iter().any(|m| url.contains(m.as_str()))
}

/// The most exchange state a plugin may keep (see [`Host::set_state`]),
/// the host's limit too.
pub const STATE_LIMIT: usize = 64 << 10;

/// What the proxy offers a plugin: a log, the recorded content, counters
/// that outlive any one instance, the user's end-of-run summary, and state
/// kept for one exchange.
pub trait Host {
    fn log(&self, level: Level, message: &str);
    fn get(&self, method: &str, url: &str) -> Option<Entry>;
    /// Every entry recorded for `method url`, one per representation
    /// (see [`negotiation`]).
    fn representations(&self, method: &str, url: &str) -> Vec<Entry>;
    fn put(&self, entry: Entry) -> Result<PutOutcome, String>;
    fn record_miss(&self, method: &str, url: &str);
    /// Makes `bytes` a body the host holds, to name in an entry's `body`
    /// (a representation the plugin made, not the bytes a response carried).
    fn put_body(&self, bytes: &[u8]) -> Result<Blob, String>;
    /// The bytes of a recorded body, checked against its hash by the host.
    fn read_body(&self, body: &Blob) -> Result<Vec<u8>, String>;
    /// Adds to a counter the host sums over all instances; the totals come
    /// back to [`Plugin::report`] at the end of the run. A fixed name
    /// (`bodies`, `rule-3-hits`): what the user reads goes to [`Host::tell`].
    fn count(&self, name: &str, by: u64);
    /// Tells the user `reason` about `url` (or the run) in the host's
    /// summary: each (kind, URL) once, however often it is told.
    fn tell(&self, kind: Kind, url: Option<&str>, reason: &str);
    /// What this plugin kept for the exchange whose hook is running.
    fn state(&self) -> Option<Vec<u8>>;
    /// Keeps `data` for the rest of this exchange's hooks (at most 64 KiB);
    /// the host drops it when the exchange ends.
    fn set_state(&self, data: &[u8]) -> Result<(), String>;
}

/// A plugin's hooks. Defaults are "no opinion". See wit/plugin.wit for when
/// each is called; state kept in `self` is per instance, and the host may use
/// several instances, so state that must last from one hook of an exchange
/// to the next goes through [`Host::set_state`].
pub trait Plugin {
    fn configure(&mut self, _host: &dyn Host, _mode: Mode, _config: &str) -> Result<(), String> {
        Ok(())
    }
    /// The hooks this plugin has an opinion on, asked after `configure`
    /// (so it may depend on the mode and config). The default,
    /// every hook, is always correct; naming fewer spares each request the
    /// calls the plugin would answer "no opinion" to.
    fn hooks(&self) -> Hooks {
        Hooks::all()
    }
    /// The requests [`Plugin::on_request`] is for, asked right after
    /// [`Plugin::configure`]. The default, none (every request), is always
    /// correct; a filter spares every other request a call that copies it
    /// into the plugin only to hear "pass". A superset is fine: `on_request`
    /// still decides.
    fn requests(&self) -> Option<RequestFilter> {
        None
    }
    /// Whether the host may answer, in this plugin's place, a plain `GET`
    /// of a URL recorded once (no conditional headers, one entry recorded
    /// without request headers) with that entry, without calling
    /// [`Plugin::on_request`]; asked right after [`Plugin::requests`]. Say
    /// yes only when that entry is what `on_request` would answer with: it
    /// then never sees those requests. The default, no, is always correct.
    fn answers_recorded(&self) -> bool {
        false
    }
    fn on_request(&mut self, _host: &dyn Host, _id: u64, _req: Request) -> RequestAction {
        RequestAction::Pass
    }
    /// The request body, after this plugin's `on_request` answered
    /// [`RequestAction::WantBody`]; the answer stands for that one.
    fn on_request_body(
        &mut self,
        _host: &dyn Host,
        _id: u64,
        _req: Request,
        _body: Vec<u8>,
    ) -> RequestAction {
        RequestAction::Pass
    }
    fn on_response(
        &mut self,
        _host: &dyn Host,
        _id: u64,
        _req: Request,
        _head: ResponseHead,
    ) -> ResponseAction {
        ResponseAction::Pass
    }
    fn on_response_body(
        &mut self,
        _host: &dyn Host,
        _id: u64,
        _req: Request,
        _head: ResponseHead,
        _body: Vec<u8>,
    ) -> Option<Vec<u8>> {
        None
    }
    fn on_complete(&mut self, _host: &dyn Host, _id: u64, _summary: Exchange) {}
    /// At the end of the run, with the totals of [`Host::count`]: lines for
    /// the user. Runs on one configured instance, which may not be one that
    /// handled any exchange: rely on the counters, not on `self`.
    fn report(&mut self, _host: &dyn Host, _counters: Vec<(String, u64)>) -> Vec<String> {
        Vec::new()
    }
}

/// Exports a `Default` type implementing [`Plugin`] as the component's hooks,
/// and installs [`alloc::SizeClasses`] as the plugin's allocator (each string
/// the host passes in is an allocation). A plugin that brings its own
/// `#[global_allocator]`, or depends on a crate that does, writes
/// `export_plugin!(T, own_allocator)`.
/// Expands to nothing on native targets, so the crate still builds and tests.
#[macro_export]
macro_rules! export_plugin {
    ($ty:ty) => {
        $crate::export_plugin!($ty, own_allocator);
        // A threaded Wasm build (atomics) keeps the default allocator: this
        // one assumes a single thread.
        #[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
        #[global_allocator]
        static BUILDPROXY_ALLOCATOR: $crate::alloc::SizeClasses = $crate::alloc::SizeClasses::new();
    };
    ($ty:ty, own_allocator) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            #[unsafe(no_mangle)]
            extern "Rust" fn __buildproxy_new_plugin() -> ::std::boxed::Box<dyn $crate::Plugin> {
                ::std::boxed::Box::new(<$ty as ::core::default::Default>::default())
            }
            use $crate::wasm::Adapter as BuildproxyAdapter;
    $crate::bindings::export_hooks!(BuildproxyAdapter with_types_in $crate::bindings);
        };
    };
}
