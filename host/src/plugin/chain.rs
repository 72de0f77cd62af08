//! The plugin chain: ordered plugins, each with a pool of instances, and the
//! hook calls with their semantics (see ARCHITECTURE.md, "The chain").
//!
//! A hook call checks an instance out of its plugin's pool, arms the epoch
//! deadline, calls, and checks it back in. An instance that trapped, ran past
//! its deadline or hit its memory cap is dropped: the next call gets a fresh
//! one, so one bad exchange never poisons the next.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::Component;
use wasmtime::{Store, UpdateDeadline};

use super::bindings::{
    self as wit, HooksWanted, Mode, Plugin, PluginPre, RequestAction, ResponseAction,
};
use super::bodies::Bodies;
use super::engine::{Limits, Runtime, TICK};
use super::fault::{DeadlineExceeded, Fault, FaultReason, MemoryCap, classify};
use super::lane;
use super::recorded;
use super::state::{Counters, HostState, Stash};
use super::{PluginError, PluginSpec};
use crate::catalog::Catalog;
use crate::inventory::store::Store as ContentStore;
use crate::proxy::policy::{
    self, BoxFuture, Policy, Request, RequestOutcome, ResponseHead, ResponseOutcome, Resume,
    Summary,
};

struct Instance {
    store: Store<HostState>,
    bindings: Plugin,
}

struct Loaded {
    name: Arc<str>,
    config: String,
    pre: PluginPre<HostState>,
    pool: Mutex<Vec<Instance>>,
    /// One permit per instance that may exist: a call holds one while it
    /// runs, so instances (and their memory) are bounded.
    permits: Arc<Semaphore>,
    counters: Counters,
    /// Exchange state, by exchange, shared by the plugin's instances.
    stash: Stash,
    /// What `configure` said it has an opinion on; the rest is skipped.
    wants: HooksWanted,
    /// The requests its `on-request` is for (`requests.only`); none: all.
    requests: Option<wit::RequestFilter>,
    /// It asked the host to answer plainly recorded requests in its place
    /// (`requests.answer-recorded`, see [`recorded`]).
    answers_recorded: bool,
}

impl Loaded {
    /// Whether this plugin's `on-request` is for `req` (see `requests` in
    /// wit/plugin.wit).
    fn is_for(&self, req: &wit::Request) -> bool {
        self.requests.as_ref().is_none_or(|f| {
            buildproxy_plugin_sdk::filter_matches(&f.url_contains, f.in_chain, &req.url, &req.chain)
        })
    }
}

/// An instance checked out for one call, with the permit that allowed it.
struct Lease {
    instance: Instance,
    _permit: OwnedSemaphorePermit,
}

pub struct Chain {
    plugins: Vec<Loaded>,
    mode: Mode,
    limits: Limits,
    catalog: Arc<Catalog>,
    bodies: Arc<Bodies>,
}

impl Chain {
    /// Compiles (or loads from cache) and configures every plugin; any error
    /// here stops the proxy before it listens.
    pub async fn load(
        runtime: &Runtime,
        specs: &[PluginSpec],
        mode: Mode,
        catalog: Arc<Catalog>,
        store: Option<Arc<ContentStore>>,
    ) -> Result<Self, PluginError> {
        // Each plugin on a thread of its own: loading a compiled plugin is
        // mostly deserialising it, and a start waits for the slowest one
        // instead of their sum.
        let link_one =
            |spec: &PluginSpec| link(runtime, &spec.name, &spec.bytes, spec.sha256.as_ref());
        let linked: Vec<_> = std::thread::scope(|s| {
            let rest: Vec<_> = specs[specs.len().min(1)..]
                .iter()
                .map(|spec| s.spawn(move || link_one(spec)))
                .collect();
            let first = specs.first().map(link_one);
            first
                .into_iter()
                .chain(
                    rest.into_iter()
                        .map(|h| h.join().expect("linking a plugin panicked")),
                )
                .collect()
        });
        let mut plugins = Vec::with_capacity(specs.len());
        for (spec, pre) in specs.iter().zip(linked) {
            let pre = pre?;
            plugins.push(Loaded {
                name: spec.name.as_str().into(),
                config: spec.config.clone(),
                pre,
                pool: Mutex::new(Vec::new()),
                permits: Arc::new(Semaphore::new(runtime.limits.instances.max(1))),
                counters: Counters::default(),
                stash: Stash::default(),
                wants: HooksWanted::all(),
                requests: None,
                answers_recorded: false,
            });
        }
        let mut chain = Self {
            plugins,
            mode,
            limits: runtime.limits,
            bodies: Arc::new(Bodies::new(
                catalog.clone(),
                store,
                runtime.limits.body_bytes,
            )),
            catalog,
        };
        // Configure one instance of each now, so a bad config fails at start
        // and the hooks each plugin wants are known before the first request.
        for i in 0..chain.plugins.len() {
            let p = &chain.plugins[i];
            let (instance, wants) =
                chain
                    .instantiate(p)
                    .await
                    .map_err(|fault| match fault.reason {
                        FaultReason::Config(reason) => PluginError::Config {
                            name: p.name.to_string(),
                            config: p.config.clone(),
                            reason,
                        },
                        reason => PluginError::Start {
                            name: p.name.to_string(),
                            reason: reason.to_string(),
                        },
                    })?;
            let mut instance = instance;
            let state = instance.store.data_mut();
            chain.plugins[i].requests = state.requests.take();
            chain.plugins[i].answers_recorded = state.answers_recorded;
            chain.plugins[i].pool.lock().unwrap().push(instance);
            chain.plugins[i].wants = wants;
        }
        Ok(chain)
    }

    /// Every plugin is called, as if none had asked for
    /// `requests.answer-recorded`: what the host's answers are checked
    /// against.
    #[cfg(test)]
    pub(super) fn ask_every_plugin(&mut self) {
        for p in &mut self.plugins {
            p.answers_recorded = false;
        }
    }

    /// The plugins that want a hook, in chain order.
    fn wanting(&self, hook: HooksWanted) -> impl Iterator<Item = &Loaded> {
        self.plugins.iter().filter(move |p| p.wants.contains(hook))
    }

    async fn instantiate(&self, p: &Loaded) -> Result<(Instance, HooksWanted), Fault> {
        let fault = |hook, e: wasmtime::Error| Fault {
            by: p.name.clone(),
            hook,
            reason: classify(&e, self.limits.deadline),
        };
        let mut store = Store::new(
            p.pre.engine(),
            HostState {
                plugin: p.name.clone(),
                catalog: self.catalog.clone(),
                memory: MemoryCap {
                    bytes: self.limits.memory_bytes,
                },
                counters: p.counters.clone(),
                ticks_left: 0,
                pace: Default::default(),
                exchange: None,
                stash: p.stash.clone(),
                bodies: self.bodies.clone(),
                requests: None,
                answers_recorded: false,
            },
        );
        store.limiter(|s| &mut s.memory);
        // Each tick the call yields to the runtime, so other exchanges run,
        // or rests a tick when it has to fight other work for the cores
        // (`lane::Pace`); once the ticks it ran are spent it fails with the
        // deadline.
        store.epoch_deadline_callback(|mut cx| {
            let state = cx.data_mut();
            if state.ticks_left == 0 {
                return Err(wasmtime::Error::new(DeadlineExceeded));
            }
            state.ticks_left -= 1;
            // (the next deadline is set once the call goes on)
            Ok(UpdateDeadline::YieldCustom(1, state.pace.at_tick(TICK)))
        });
        arm(&mut store, &self.limits);
        let bindings = p
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| fault("instantiate", e))?;
        arm(&mut store, &self.limits);
        let configured = bindings
            .buildproxy_plugin_hooks()
            .call_configure(&mut store, self.mode, &p.config)
            .await
            .map_err(|e| fault("configure", e))?;
        match configured {
            Ok(wants) => Ok((Instance { store, bindings }, wants)),
            Err(reason) => Err(Fault {
                by: p.name.clone(),
                hook: "configure",
                reason: FaultReason::Config(reason),
            }),
        }
    }

    /// Checks an instance out for one call, with the deadline armed; waits
    /// while the plugin has as many calls running as it may have instances.
    async fn lease(&self, p: &Loaded, exchange: Option<u64>) -> Result<Lease, Fault> {
        let permit = p
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let pooled = p.pool.lock().unwrap().pop();
        let mut instance = match pooled {
            Some(i) => i,
            None => self.instantiate(p).await?.0,
        };
        arm(&mut instance.store, &self.limits);
        instance.store.data_mut().exchange = exchange;
        Ok(Lease {
            instance,
            _permit: permit,
        })
    }

    /// Ends a call: a good instance goes back to the pool; one that failed
    /// is dropped, since its state may be anything now.
    fn settle<R>(
        &self,
        p: &Loaded,
        hook: &'static str,
        lease: Lease,
        result: wasmtime::Result<R>,
    ) -> Result<R, Fault> {
        match result {
            Ok(r) => {
                p.pool.lock().unwrap().push(lease.instance);
                Ok(r)
            }
            // The instance is dropped: its state may be anything now.
            Err(e) => {
                tracing::warn!(
                    "plugin {}: dropped the instance that faulted in {hook}; the next call \
                     starts a fresh one",
                    p.name
                );
                Err(Fault {
                    by: p.name.clone(),
                    hook,
                    reason: classify(&e, self.limits.deadline),
                })
            }
        }
    }

    /// `on-request` in chain order until one plugin responds or asks for
    /// the body, from the plugin at `start`.
    async fn request(
        &self,
        id: u64,
        mut req: wit::Request,
        start: usize,
        mut by: Option<Arc<str>>,
    ) -> Result<RequestOutcome, Fault> {
        for (i, p) in self.plugins.iter().enumerate().skip(start) {
            if !p.wants.contains(HooksWanted::ON_REQUEST) || !p.is_for(&req) {
                continue;
            }
            if p.answers_recorded
                && let Some(response) = recorded::answer(&self.catalog, &req)
            {
                return Ok(RequestOutcome::Respond {
                    by: p.name.clone(),
                    response: response.into(),
                });
            }
            let mut l = self.lease(p, Some(id)).await?;
            let (l, sent, r) = lane::run(async move {
                let hooks = l.instance.bindings.buildproxy_plugin_hooks();
                let r = hooks.call_on_request(&mut l.instance.store, id, &req).await;
                (l, req, r)
            })
            .await;
            req = sent;
            let action = self.settle(p, "on-request", l, r)?;
            if let RequestAction::WantBody = action {
                return Ok(RequestOutcome::WantBody {
                    request: req.into(),
                    resume: Resume { at: i, by },
                });
            }
            if let Some(answer) = apply(p, action, &mut req, &mut by) {
                return Ok(answer);
            }
        }
        Ok(RequestOutcome::Forward {
            request: req.into(),
            by,
        })
    }

    /// `on-request-body` for the plugin that asked; its answer stands for
    /// its `on-request`, and the chain goes on after it.
    async fn request_body(
        &self,
        id: u64,
        req: Request,
        body: Bytes,
        resume: Resume,
    ) -> Result<RequestOutcome, Fault> {
        let mut req: wit::Request = req.into();
        let Resume { at, mut by } = resume;
        let p = &self.plugins[at];
        let mut l = self.lease(p, Some(id)).await?;
        let (l, sent, r) = lane::run(async move {
            let hooks = l.instance.bindings.buildproxy_plugin_hooks();
            let r = hooks
                .call_on_request_body(&mut l.instance.store, id, &req, &body)
                .await;
            (l, req, r)
        })
        .await;
        req = sent;
        let action = self.settle(p, "on-request-body", l, r)?;
        if let Some(answer) = apply(p, action, &mut req, &mut by) {
            return Ok(answer);
        }
        self.request(id, req, at + 1, by).await
    }

    /// `on-response` on every plugin in chain order; head replacements
    /// accumulate, and each plugin sees the head as the previous left it.
    async fn response(
        &self,
        id: u64,
        req: &Request,
        head: ResponseHead,
    ) -> Result<ResponseOutcome, Fault> {
        let mut req: wit::Request = req.clone().into();
        let mut head: wit::ResponseHead = head.into();
        let mut want_body = Vec::new();
        for (i, p) in self.plugins.iter().enumerate() {
            if !p.wants.contains(HooksWanted::ON_RESPONSE) {
                continue;
            }
            let mut l = self.lease(p, Some(id)).await?;
            let (l, sent, r) = lane::run(async move {
                let hooks = l.instance.bindings.buildproxy_plugin_hooks();
                let r = hooks
                    .call_on_response(&mut l.instance.store, id, &req, &head)
                    .await;
                (l, (req, head), r)
            })
            .await;
            (req, head) = sent;
            match self.settle(p, "on-response", l, r)? {
                ResponseAction::Pass => {}
                ResponseAction::ReplaceHead(h) => {
                    let h: ResponseHead = h.into();
                    // Later plugins see it: it must be valid before they do.
                    policy::check_head(&h).map_err(|reason| Fault {
                        by: p.name.clone(),
                        hook: "on-response",
                        reason,
                    })?;
                    head = h.into();
                }
                ResponseAction::WantBody => want_body.push(i),
            }
        }
        Ok(ResponseOutcome {
            head: head.into(),
            want_body,
        })
    }

    /// `on-response-body` for each plugin that asked, in chain order, each
    /// seeing the previous one's result.
    async fn response_body(
        &self,
        id: u64,
        req: &Request,
        head: &ResponseHead,
        wanting: &[usize],
        body: Bytes,
    ) -> Result<Option<Bytes>, Fault> {
        let mut req: wit::Request = req.clone().into();
        let mut head: wit::ResponseHead = head.clone().into();
        let (mut current, mut replaced) = (body, false);
        for &index in wanting {
            let p = &self.plugins[index];
            let mut l = self.lease(p, Some(id)).await?;
            let given = current.clone();
            let (l, sent, r) = lane::run(async move {
                let hooks = l.instance.bindings.buildproxy_plugin_hooks();
                let r = hooks
                    .call_on_response_body(&mut l.instance.store, id, &req, &head, &given)
                    .await;
                (l, (req, head), r)
            })
            .await;
            (req, head) = sent;
            if let Some(new) = self.settle(p, "on-response-body", l, r)? {
                current = Bytes::from(new);
                replaced = true;
            }
        }
        Ok(replaced.then_some(current))
    }

    /// `on-complete` on every plugin. A fault here cannot fail the exchange
    /// (the client has its answer), so it is logged.
    async fn complete(&self, id: u64, summary: &Summary) {
        let mut exchange = wit::Exchange::from(summary);
        for p in self.wanting(HooksWanted::ON_COMPLETE) {
            let mut l = match self.lease(p, Some(id)).await {
                Ok(l) => l,
                Err(fault) => {
                    tracing::error!("{fault}");
                    continue;
                }
            };
            let (l, sent, r) = lane::run(async move {
                let hooks = l.instance.bindings.buildproxy_plugin_hooks();
                let r = hooks
                    .call_on_complete(&mut l.instance.store, id, &exchange)
                    .await;
                (l, exchange, r)
            })
            .await;
            exchange = sent;
            if let Err(fault) = self.settle(p, "on-complete", l, r) {
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
    pub async fn report(&self) -> Vec<(Arc<str>, String)> {
        let mut lines = Vec::new();
        for p in self.wanting(HooksWanted::REPORT) {
            let totals: Vec<(String, u64)> = p
                .counters
                .lock()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            let said = async {
                let mut l = self.lease(p, None).await?;
                let r = l
                    .instance
                    .bindings
                    .buildproxy_plugin_hooks()
                    .call_report(&mut l.instance.store, &totals)
                    .await;
                self.settle(p, "report", l, r)
            };
            match said.await {
                Ok(said) => lines.extend(said.into_iter().map(|l| (p.name.clone(), l))),
                Err(fault) => lines.push((p.name.clone(), format!("could not report: {fault}"))),
            }
        }
        lines
    }
}

impl Policy for Chain {
    fn on_request(&self, id: u64, req: Request) -> BoxFuture<'_, Result<RequestOutcome, Fault>> {
        Box::pin(self.request(id, req.into(), 0, None))
    }

    fn on_request_body(
        &self,
        id: u64,
        req: Request,
        body: Bytes,
        resume: Resume,
    ) -> BoxFuture<'_, Result<RequestOutcome, Fault>> {
        Box::pin(self.request_body(id, req, body, resume))
    }

    fn on_response<'a>(
        &'a self,
        id: u64,
        req: &'a Request,
        head: ResponseHead,
    ) -> BoxFuture<'a, Result<ResponseOutcome, Fault>> {
        // No plugin has an opinion (replay's chain): no call, nothing to
        // convert, and not the call's future, which is large, to allocate.
        if self.wanting(HooksWanted::ON_RESPONSE).next().is_none() {
            return Box::pin(std::future::ready(Ok(ResponseOutcome {
                head,
                want_body: Vec::new(),
            })));
        }
        Box::pin(self.response(id, req, head))
    }

    fn on_response_body<'a>(
        &'a self,
        id: u64,
        req: &'a Request,
        head: &'a ResponseHead,
        want_body: &'a [usize],
        body: Bytes,
    ) -> BoxFuture<'a, Result<Option<Bytes>, Fault>> {
        Box::pin(self.response_body(id, req, head, want_body, body))
    }

    fn on_complete<'a>(&'a self, id: u64, summary: &'a Summary) -> BoxFuture<'a, ()> {
        if self.wanting(HooksWanted::ON_COMPLETE).next().is_none() {
            return Box::pin(std::future::ready(()));
        }
        Box::pin(self.complete(id, summary))
    }

    fn end(&self, id: u64) {
        for p in &self.plugins {
            let mut stash = p.stash.lock().unwrap();
            if !stash.is_empty() {
                stash.remove(&id);
            }
        }
    }
}

/// What one plugin's request action means for the chain: a rewrite changes
/// the request (and who rewrote it), a local answer ends it (`Some`);
/// `pass`, and `want-body` once the body was given, go on.
fn apply(
    p: &Loaded,
    action: RequestAction,
    req: &mut wit::Request,
    by: &mut Option<Arc<str>>,
) -> Option<RequestOutcome> {
    match action {
        RequestAction::Pass | RequestAction::WantBody => None,
        RequestAction::Rewrite(r) => {
            *req = r;
            *by = Some(p.name.clone());
            None
        }
        RequestAction::Respond(response) => Some(RequestOutcome::Respond {
            by: p.name.clone(),
            response: response.into(),
        }),
    }
}

/// Gives a store a fresh deadline for its next call: one tick until the
/// epoch callback runs, then `deadline_ticks` more yields.
fn arm(store: &mut Store<HostState>, limits: &Limits) {
    store.data_mut().ticks_left = limits.deadline_ticks();
    store.data_mut().pace.reset();
    store.set_epoch_deadline(1);
}

/// Compiles a component and links it against the host's imports and the
/// hooks it must export; the error says what to change in the plugin.
pub fn link(
    runtime: &Runtime,
    name: &str,
    bytes: &[u8],
    sha256: Option<&[u8; 32]>,
) -> Result<PluginPre<HostState>, PluginError> {
    let component: Component = runtime.compile(name, bytes, sha256)?;
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
