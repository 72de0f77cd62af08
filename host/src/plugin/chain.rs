//! The plugin chain: ordered plugins, each with a pool of instances, and the
//! hook calls with their semantics (see ARCHITECTURE.md, "The chain").
//!
//! A hook call checks an instance out of its plugin's pool, arms the epoch
//! deadline, calls, and checks it back in. An instance that trapped, ran past
//! its deadline or hit its memory cap is dropped: the next call gets a fresh
//! one, so one bad exchange never poisons the next.

use std::sync::{Arc, Mutex};

use wasmtime::component::Component;
use wasmtime::{Store, StoreLimitsBuilder, Trap};

use super::bindings::{
    Exchange, HooksWanted, Mode, Plugin, PluginPre, Request, RequestAction, Response,
    ResponseAction, ResponseHead,
};
use super::engine::{Limits, Runtime};
use super::state::{Counters, HostState};
use super::{PluginError, PluginSpec};
use crate::catalog::Catalog;

/// A plugin failed while handling one exchange.
#[derive(Debug, Clone, thiserror::Error)]
#[error("plugin {plugin} failed in {hook}: {reason}")]
pub struct PluginFault {
    pub plugin: Arc<str>,
    pub hook: &'static str,
    pub reason: String,
}

struct Instance {
    store: Store<HostState>,
    bindings: Plugin,
}

struct Loaded {
    name: Arc<str>,
    config: String,
    pre: PluginPre<HostState>,
    pool: Mutex<Vec<Instance>>,
    counters: Counters,
    /// What `configure` said it has an opinion on; the rest is skipped.
    wants: HooksWanted,
}

pub struct Chain {
    plugins: Vec<Loaded>,
    mode: Mode,
    limits: Limits,
    catalog: Arc<Catalog>,
}

/// Where a request goes after `on-request`.
pub enum RequestOutcome {
    /// Upstream, as (possibly) rewritten.
    Forward(Request),
    /// A plugin answered.
    Respond { by: Arc<str>, response: Response },
}

/// What `on-response` decided.
pub struct ResponseOutcome {
    pub head: ResponseHead,
    /// Indexes of plugins that want the whole body, in chain order.
    pub want_body: Vec<usize>,
}

impl Chain {
    /// Compiles (or loads from cache) and configures every plugin; any error
    /// here stops the proxy before it listens.
    pub fn load(
        runtime: &Runtime,
        specs: &[PluginSpec],
        mode: Mode,
        catalog: Arc<Catalog>,
    ) -> Result<Self, PluginError> {
        let mut plugins = Vec::with_capacity(specs.len());
        for spec in specs {
            let pre = link(runtime, &spec.name, &spec.bytes)?;
            plugins.push(Loaded {
                name: spec.name.as_str().into(),
                config: spec.config.clone(),
                pre,
                pool: Mutex::new(Vec::new()),
                counters: Counters::default(),
                wants: HooksWanted::all(),
            });
        }
        let mut chain = Self {
            plugins,
            mode,
            limits: runtime.limits,
            catalog,
        };
        // Configure one instance of each now, so a bad config fails at start
        // and the hooks each plugin wants are known before the first request.
        for i in 0..chain.plugins.len() {
            let p = &chain.plugins[i];
            let (instance, wants) = chain.instantiate(p).map_err(|fault| {
                if fault.hook == "configure" && fault.reason.starts_with("rejected config: ") {
                    PluginError::Config {
                        name: p.name.to_string(),
                        config: p.config.clone(),
                        reason: fault.reason["rejected config: ".len()..].to_string(),
                    }
                } else {
                    PluginError::Start {
                        name: p.name.to_string(),
                        reason: fault.reason,
                    }
                }
            })?;
            chain.plugins[i].pool.lock().unwrap().push(instance);
            chain.plugins[i].wants = wants;
        }
        Ok(chain)
    }

    /// The plugins that want a hook, in chain order.
    fn wanting(&self, hook: HooksWanted) -> impl Iterator<Item = &Loaded> {
        self.plugins.iter().filter(move |p| p.wants.contains(hook))
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.plugins.iter().map(|p| &*p.name)
    }

    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }

    fn instantiate(&self, p: &Loaded) -> Result<(Instance, HooksWanted), PluginFault> {
        let fault = |hook, e: wasmtime::Error| PluginFault {
            plugin: p.name.clone(),
            hook,
            reason: describe(&e, &self.limits),
        };
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.limits.memory_bytes)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(
            p.pre.engine(),
            HostState {
                plugin: p.name.clone(),
                catalog: self.catalog.clone(),
                limits,
                counters: p.counters.clone(),
            },
        );
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(self.limits.deadline_ticks());
        let bindings = p
            .pre
            .instantiate(&mut store)
            .map_err(|e| fault("instantiate", e))?;
        let configured = bindings
            .buildproxy_plugin_hooks()
            .call_configure(&mut store, self.mode, &p.config)
            .map_err(|e| fault("configure", e))?;
        match configured {
            Ok(wants) => Ok((Instance { store, bindings }, wants)),
            Err(reason) => Err(PluginFault {
                plugin: p.name.clone(),
                hook: "configure",
                reason: format!("rejected config: {reason}"),
            }),
        }
    }

    /// Runs one hook on one plugin with the deadline armed.
    fn call<R>(
        &self,
        p: &Loaded,
        hook: &'static str,
        f: impl FnOnce(&mut Store<HostState>, &Plugin) -> wasmtime::Result<R>,
    ) -> Result<R, PluginFault> {
        let pooled = p.pool.lock().unwrap().pop();
        let mut instance = match pooled {
            Some(i) => i,
            None => self.instantiate(p)?.0,
        };
        instance
            .store
            .set_epoch_deadline(self.limits.deadline_ticks());
        match f(&mut instance.store, &instance.bindings) {
            Ok(r) => {
                p.pool.lock().unwrap().push(instance);
                Ok(r)
            }
            // The instance is dropped: its state may be anything now.
            Err(e) => {
                tracing::warn!(
                    "plugin {}: dropped the instance that faulted in {hook}; the next call \
                     starts a fresh one",
                    p.name
                );
                Err(PluginFault {
                    plugin: p.name.clone(),
                    hook,
                    reason: describe(&e, &self.limits),
                })
            }
        }
    }

    /// `on-request` in chain order until one plugin responds.
    pub fn on_request(&self, id: u64, mut req: Request) -> Result<RequestOutcome, PluginFault> {
        for p in self.wanting(HooksWanted::ON_REQUEST) {
            let action = self.call(p, "on-request", |s, b| {
                b.buildproxy_plugin_hooks().call_on_request(s, id, &req)
            })?;
            match action {
                RequestAction::Pass => {}
                RequestAction::Rewrite(r) => req = r,
                RequestAction::Respond(response) => {
                    return Ok(RequestOutcome::Respond {
                        by: p.name.clone(),
                        response,
                    });
                }
            }
        }
        Ok(RequestOutcome::Forward(req))
    }

    /// `on-response` on every plugin in chain order; head replacements
    /// accumulate, and each plugin sees the head as the previous left it.
    pub fn on_response(
        &self,
        id: u64,
        req: &Request,
        mut head: ResponseHead,
    ) -> Result<ResponseOutcome, PluginFault> {
        let mut want_body = Vec::new();
        for (i, p) in self.plugins.iter().enumerate() {
            if !p.wants.contains(HooksWanted::ON_RESPONSE) {
                continue;
            }
            let action = self.call(p, "on-response", |s, b| {
                b.buildproxy_plugin_hooks()
                    .call_on_response(s, id, req, &head)
            })?;
            match action {
                ResponseAction::Pass => {}
                ResponseAction::ReplaceHead(h) => {
                    crate::proxy::headers::validate(&h).map_err(|why| PluginFault {
                        plugin: p.name.clone(),
                        hook: "on-response",
                        reason: format!("replaced the head with {why}"),
                    })?;
                    head = h;
                }
                ResponseAction::WantBody => want_body.push(i),
            }
        }
        Ok(ResponseOutcome { head, want_body })
    }

    /// `on-response-body` for one plugin that asked for the body.
    pub fn on_response_body(
        &self,
        index: usize,
        id: u64,
        req: &Request,
        head: &ResponseHead,
        body: &[u8],
    ) -> Result<Option<Vec<u8>>, PluginFault> {
        let p = &self.plugins[index];
        self.call(p, "on-response-body", |s, b| {
            b.buildproxy_plugin_hooks()
                .call_on_response_body(s, id, req, head, body)
        })
    }

    /// `on-complete` on every plugin. A fault here cannot fail the exchange
    /// (the client has its answer), so it is logged.
    pub fn on_complete(&self, id: u64, summary: &Exchange) {
        for p in self.wanting(HooksWanted::ON_COMPLETE) {
            if let Err(fault) = self.call(p, "on-complete", |s, b| {
                b.buildproxy_plugin_hooks().call_on_complete(s, id, summary)
            }) {
                tracing::error!(
                    "{fault} (exchange {} {})",
                    summary.request.method,
                    summary.request.url
                );
            }
        }
    }

    /// `report` on one instance of every plugin, with its counters' totals:
    /// the lines each plugin has for the user at the end of the run, as
    /// (plugin, line). Called once, when no exchange is in flight.
    pub fn report(&self) -> Vec<(Arc<str>, String)> {
        let mut lines = Vec::new();
        for p in self.wanting(HooksWanted::REPORT) {
            let totals: Vec<(String, u64)> = p
                .counters
                .lock()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            match self.call(p, "report", |s, b| {
                b.buildproxy_plugin_hooks().call_report(s, &totals)
            }) {
                Ok(said) => lines.extend(said.into_iter().map(|l| (p.name.clone(), l))),
                Err(fault) => lines.push((p.name.clone(), format!("could not report: {fault}"))),
            }
        }
        lines
    }
}

/// Compiles a component and links it against the host's imports and the
/// hooks it must export; the error says what to change in the plugin.
pub fn link(
    runtime: &Runtime,
    name: &str,
    bytes: &[u8],
) -> Result<PluginPre<HostState>, PluginError> {
    let component: Component = runtime.compile(name, bytes)?;
    let link_err = |e: wasmtime::Error| PluginError::Link {
        name: name.to_string(),
        reason: super::fit::diagnose(&runtime.engine, &component)
            .unwrap_or_else(|| format!("{e:#}")),
    };
    let instance_pre = runtime
        .linker
        .instantiate_pre(&component)
        .map_err(link_err)?;
    PluginPre::new(instance_pre).map_err(link_err)
}

/// A sentence a user can act on, from a wasmtime error.
fn describe(e: &wasmtime::Error, limits: &Limits) -> String {
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => format!(
            "ran past its deadline of {} ms (raise it with --plugin-deadline-ms if the work is legitimate)",
            limits.deadline.as_millis()
        ),
        Some(Trap::UnreachableCodeReached) => {
            format!("trapped: unreachable code reached (a panic in a Rust plugin): {e:#}")
        }
        Some(trap) => format!("trapped: {trap}: {e:#}"),
        None if format!("{e:#}").contains("memory") => format!(
            "exceeded its memory limit of {} MiB (raise it with --plugin-memory-mib): {e:#}",
            limits.memory_bytes >> 20
        ),
        None => format!("{e:#}"),
    }
}
