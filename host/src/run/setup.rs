//! What every mode does first: the CA, the plugin chain, the listener.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::TcpListener;

use crate::catalog::{Catalog, Kind};
use crate::cli::Common;
use crate::inventory::store::Store;
use crate::patch_rules;
use crate::plugin::bindings::Mode;
use crate::plugin::{Chain, Limits, PluginError, PluginSpec, Runtime, bundled};
use crate::proxy::auth::Access;
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
        instances: common.plugin_instances as usize,
    }
}

/// The network timeouts from `--*-timeout-secs`.
pub fn timeouts(common: &Common) -> Result<Timeouts> {
    let secs = |flag: &str, v: f64| {
        Duration::try_from_secs_f64(v)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| anyhow::anyhow!("--{flag} {v}: give a positive number of seconds"))
    };
    Ok(Timeouts {
        connect: secs("connect-timeout-secs", common.connect_timeout_secs)?,
        response: secs("response-timeout-secs", common.response_timeout_secs)?,
        body_idle: secs("idle-timeout-secs", common.idle_timeout_secs)?,
        client_header: secs(
            "client-header-timeout-secs",
            common.client_header_timeout_secs,
        )?,
    })
}

pub fn plugin_specs(common: &Common) -> Result<Vec<PluginSpec>> {
    let mut specs = if common.no_default_plugins {
        Vec::new()
    } else {
        bundled::default_chain()
    };
    let bundled_patch = specs.iter().position(|s| s.name == patch_rules::PLUGIN);
    for arg in &common.plugins {
        specs.push(PluginSpec::from_arg(arg)?);
    }
    for arg in &common.plugin_configs {
        set_config(&mut specs, arg)?;
    }
    if !common.patches.is_empty() {
        add_patch_rules(&mut specs, &common.patches)?;
    }
    // Without rules the patch plugin has nothing to do: leaving it out
    // spares its compile at start and three calls per exchange.
    if let Some(i) = bundled_patch
        && specs[i].config.is_empty()
    {
        specs.remove(i);
    }
    Ok(specs)
}

/// `--patch RULES.json`: the rules, and the files they name, become the
/// bundled patch plugin's config. It joins the chain even under
/// `--no-default-plugins`: it was asked for.
fn add_patch_rules(specs: &mut Vec<PluginSpec>, files: &[PathBuf]) -> Result<()> {
    let config = patch_rules::config(files)?;
    match specs.iter_mut().find(|s| s.name == patch_rules::PLUGIN) {
        Some(spec) if !spec.config.is_empty() => anyhow::bail!(
            "--patch and --plugin-config {}=… both configure the patch plugin: give the rules with --patch only",
            patch_rules::PLUGIN
        ),
        Some(spec) => spec.config = config,
        None => {
            let mut spec = bundled::default_chain()
                .into_iter()
                .find(|s| s.name == patch_rules::PLUGIN)
                .expect("the patch plugin is bundled");
            spec.config = config;
            specs.push(spec);
        }
    }
    Ok(())
}

/// What the plugins have to say at the end of a run (`report`, and what
/// they told the catalog), on stderr. Failed downloads are left out when the
/// caller's summary lists them already.
pub async fn report(running: &Running, failures_listed: bool) {
    for (plugin, line) in running.chain.report().await {
        eprintln!("buildproxy: {plugin}: {line}");
    }
    for told in running.proxy.catalog.told() {
        match told.kind {
            Kind::Failed if failures_listed => {}
            Kind::Failed => eprintln!("buildproxy: error: {told}"),
            Kind::Missed => eprintln!("buildproxy: missed: {told}"),
            Kind::Conflict => eprintln!("buildproxy: conflict: {told}"),
            Kind::Unused => eprintln!("buildproxy: unused: {told}"),
            Kind::Note => eprintln!("buildproxy: note: {told}"),
        }
    }
}

pub struct Running {
    pub proxy: Arc<Proxy>,
    /// The policy the proxy calls, for the end-of-run report.
    pub chain: Arc<Chain>,
    pub addr: SocketAddr,
    pub ca: Arc<Authority>,
}

impl Running {
    /// The URL clients use: with the run's credentials (`proxy::auth`).
    pub fn proxy_url(&self) -> String {
        self.proxy.access.proxy_url(self.addr)
    }

    /// The environment a client of this proxy gets (written to disk: the
    /// CA bundle), trusting `extra_roots` too.
    pub fn client_env(
        &self,
        extra_roots: &[rustls::pki_types::CertificateDer<'_>],
        proxy_loopback: bool,
    ) -> Result<crate::env::ClientEnv> {
        crate::env::ClientEnv::prepare(
            self.addr,
            &self.proxy_url(),
            self.ca.cert_pem(),
            extra_roots,
            proxy_loopback,
        )
        .context("writing the client environment")
    }
}

/// Loads the chain and starts listening; returns once the socket is bound.
pub async fn start(
    common: &Common,
    mode: Mode,
    catalog: Arc<Catalog>,
    upstream: Option<Upstream>,
    store: Option<Arc<Store>>,
) -> Result<Running> {
    // The CA's keys and signature on another thread while the plugins load.
    let ca = {
        let common = common.clone();
        tokio::task::spawn_blocking(move || authority(&common))
    };
    let limits = limits(common);
    let cache = common
        .plugin_cache
        .clone()
        .or_else(Runtime::default_cache_dir);
    let runtime = Runtime::new(limits, cache)?;
    let chain = Chain::load(
        &runtime,
        &plugin_specs(common)?,
        mode,
        catalog.clone(),
        store.clone(),
    )
    .await
    .map_err(|e| {
        match e {
            // The patch plugin's reason names the rules file, the rule
            // and the fix; its config is that file, re-encoded.
            PluginError::Config { name, reason, .. }
                if name == patch_rules::PLUGIN && !common.patches.is_empty() =>
            {
                anyhow::anyhow!("--patch: {reason}")
            }
            e => e.into(),
        }
    })?;
    if !common.listen.ip().is_loopback() {
        if !common.allow_non_loopback {
            anyhow::bail!(
                "--listen {}: not a loopback address, so other machines could reach the proxy; \
                 use 127.0.0.1 or ::1, or add --allow-non-loopback (clients must then send \
                 the credentials in the exported proxy URL)",
                common.listen
            );
        }
        eprintln!(
            "buildproxy: warning: listening on {}, reachable from other machines \
             (--allow-non-loopback); only clients with this run's credentials are served",
            common.listen
        );
    }
    let ca = ca.await.context("making the run's CA")??;
    let access = Access::new(common.require_secret).context("making the run's proxy secret")?;
    let listener = TcpListener::bind(common.listen)
        .await
        .with_context(|| format!("listening on {}", common.listen))?;
    let addr = listener.local_addr()?;
    let chain = Arc::new(chain);
    let proxy = Arc::new(Proxy::new(
        chain.clone(),
        catalog,
        ca.clone(),
        upstream,
        store,
        limits.body_bytes,
        timeouts(common)?,
        access,
    ));
    tokio::spawn(server::serve(proxy.clone(), listener));
    tracing::info!("listening on {addr}");
    Ok(Running {
        proxy,
        chain,
        addr,
        ca,
    })
}

/// `--plugin-config NAME=CONFIG`: a bundled plugin has no `=CONFIG` of its
/// own on the command line, so its config is set by name.
fn set_config(specs: &mut [PluginSpec], arg: &str) -> Result<()> {
    let Some((name, config)) = arg.split_once('=') else {
        anyhow::bail!("--plugin-config {arg:?}: expected NAME=CONFIG, e.g. redirect=flatten");
    };
    let mut found = false;
    for spec in specs.iter_mut().filter(|s| s.name == name) {
        spec.config = config.to_string();
        found = true;
    }
    if !found {
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        anyhow::bail!(
            "--plugin-config {arg:?}: no plugin named {name:?} in the chain (it has: {})",
            names.join(", ")
        );
    }
    Ok(())
}
