//! What every mode does first: the CA, the plugin chain, the listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::TcpListener;

use crate::catalog::Catalog;
use crate::cli::Common;
use crate::inventory::store::Store;
use crate::plugin::bindings::Mode;
use crate::plugin::{Chain, Limits, PluginSpec, Runtime, bundled};
use crate::proxy::{Proxy, Timeouts, Upstream, server};
use crate::tls::Authority;

pub fn authority(common: &Common) -> Result<Arc<Authority>> {
    Ok(Arc::new(match (&common.ca_cert, &common.ca_key) {
        (Some(cert), Some(key)) => Authority::load(cert, key)?,
        _ => Authority::generate()?,
    }))
}

pub fn limits(common: &Common) -> Limits {
    Limits {
        deadline: Duration::from_millis(common.plugin_deadline_ms),
        memory_bytes: common.plugin_memory_mib << 20,
        body_bytes: common.plugin_body_limit_mib << 20,
    }
}

pub fn plugin_specs(common: &Common) -> Result<Vec<PluginSpec>> {
    let mut specs = if common.no_default_plugins {
        Vec::new()
    } else {
        bundled::default_chain()
    };
    for arg in &common.plugins {
        specs.push(PluginSpec::from_arg(arg)?);
    }
    Ok(specs)
}

pub struct Running {
    pub proxy: Arc<Proxy>,
    pub addr: SocketAddr,
    pub ca: Arc<Authority>,
}

/// Loads the chain and starts listening; returns once the socket is bound.
pub async fn start(
    common: &Common,
    mode: Mode,
    catalog: Arc<Catalog>,
    upstream: Option<Upstream>,
    store: Option<Arc<Store>>,
) -> Result<Running> {
    let ca = authority(common)?;
    let limits = limits(common);
    let cache = common
        .plugin_cache
        .clone()
        .or_else(Runtime::default_cache_dir);
    let runtime = Runtime::new(limits, cache)?;
    let chain = Chain::load(&runtime, &plugin_specs(common)?, mode, catalog.clone())?;
    let listener = TcpListener::bind(common.listen)
        .await
        .with_context(|| format!("listening on {}", common.listen))?;
    let addr = listener.local_addr()?;
    let proxy = Arc::new(Proxy::new(
        chain,
        catalog,
        ca.clone(),
        upstream,
        store,
        limits,
        Timeouts::default(),
    ));
    tokio::spawn(server::serve(proxy.clone(), listener));
    tracing::info!("listening on {addr}");
    Ok(Running { proxy, addr, ca })
}
