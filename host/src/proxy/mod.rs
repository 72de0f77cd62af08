//! The proxy: listener, CONNECT and TLS interception, and the life of one
//! exchange. Mechanism only: every decision about content is a plugin's.
//!
//! In replay mode `upstream` is `None`: the replay path never opens an
//! upstream socket, whatever the plugins do.

pub mod auth;
pub mod body;
pub mod error;
pub mod exchange;
pub mod file_body;
pub mod headers;
pub mod policy;

pub mod idle;
pub mod redirects;
pub mod server;
pub mod sink;
mod sock_diag;
pub mod stall;
pub mod url;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;

use crate::catalog::Catalog;
use crate::inventory::store::Store;
use crate::tls::Authority;
use body::ProxyBody;
use policy::Policy;

pub type Upstream = Client<HttpsConnector<HttpConnector>, ProxyBody>;

/// How long the proxy waits on the network before it gives up on an
/// exchange. Every wait on a peer has one, so a stalled upstream or client
/// fails its own exchange and never hangs the build (flags in `cli::Common`).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Connecting to an upstream.
    pub connect: Duration,
    /// From sending a request upstream to its response head.
    pub response: Duration,
    /// An upstream body that sends nothing for this long, mid-transfer,
    /// fails: without it a stalled body would hold its client forever.
    pub body_idle: Duration,
    /// A client's request head must arrive within this.
    pub client_header: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(30),
            response: Duration::from_secs(300),
            body_idle: Duration::from_secs(120),
            client_header: Duration::from_secs(60),
        }
    }
}

pub struct Proxy {
    pub policy: Arc<dyn Policy>,
    pub catalog: Arc<Catalog>,
    pub ca: Arc<Authority>,
    pub upstream: Option<Upstream>,
    pub store: Option<Arc<Store>>,
    /// The largest body buffered for a policy that asks for one.
    pub body_limit: usize,
    pub timeouts: Timeouts,
    /// Who may use the proxy (`auth`).
    pub access: auth::Access,
    /// The redirects relayed recently, so a follow-up request knows its chain.
    pub redirects: redirects::Redirects,
    next_id: AtomicU64,
    inflight: watch::Sender<usize>,
}

impl Proxy {
    // Every part is required and set once, at start (run/setup.rs).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        policy: Arc<dyn Policy>,
        catalog: Arc<Catalog>,
        ca: Arc<Authority>,
        upstream: Option<Upstream>,
        store: Option<Arc<Store>>,
        body_limit: usize,
        timeouts: Timeouts,
        access: auth::Access,
    ) -> Self {
        Self {
            policy,
            catalog,
            ca,
            upstream,
            store,
            body_limit,
            timeouts,
            access,
            redirects: redirects::Redirects::default(),
            next_id: AtomicU64::new(1),
            inflight: watch::channel(0).0,
        }
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts an exchange as running until the guard drops (after its
    /// `on-complete`), so a capture writes its file only once every
    /// exchange the build saw has been recorded.
    fn enter(self: &Arc<Self>) -> InFlight {
        self.inflight.send_modify(|n| *n += 1);
        InFlight(self.clone())
    }

    /// Waits until no exchange is running, or `limit` passes.
    pub async fn idle(&self, limit: Duration) -> bool {
        let mut rx = self.inflight.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|n| *n == 0))
            .await
            .is_ok()
    }
}

pub struct InFlight(Arc<Proxy>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.inflight.send_modify(|n| *n -= 1);
    }
}

/// The upstream client: HTTP/1.1 and h2 (ALPN), `TCP_NODELAY` on.
pub fn upstream_client(tls: rustls::ClientConfig, timeouts: &Timeouts) -> Upstream {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(timeouts.connect));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new()).build(https)
}
