//! The proxy a capture runs the build behind, and the build itself: from
//! the journal and store being opened to the command's end.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use crate::catalog::Catalog;
use crate::cli::CaptureArgs;
use crate::env::ClientEnv;
use crate::inventory::journal::Journal;
use crate::inventory::store::Store;
use crate::plugin::bindings::Mode;
use crate::proxy::{Upstream, upstream_client};
use crate::run::child::{self, Ended};
use crate::run::setup::{self, Running};
use crate::tls::upstream;

/// How long finished downloads may take to be recorded after the command
/// exits (their last bytes may still be in flight).
const DRAIN: Duration = Duration::from_secs(10);

/// What the rest of the run needs from the running proxy.
pub(super) struct Session {
    pub running: Running,
    pub catalog: Arc<Catalog>,
    pub store: Option<Arc<Store>>,
    pub env: ClientEnv,
    /// The upstream client, kept for `--verify` to fetch with.
    pub verifier: Option<Upstream>,
    /// `--verify`'s bound on each download: the upstream response timeout.
    pub response_timeout: Duration,
}

impl Session {
    /// Opens the journal and `--store`, starts the proxy and writes the
    /// client environment (printing it with `--print-env`).
    pub async fn start(args: &CaptureArgs, journal_path: &Path) -> Result<Self> {
        let journal = Journal::open(journal_path)?;
        let store = match &args.store {
            Some(dir) => Some(Arc::new(Store::open(dir)?)),
            None => None,
        };
        let (roots, root_certs) = upstream::roots(&args.upstream_ca)?;
        let timeouts = setup::timeouts(&args.common)?;
        let client = upstream_client(upstream::client_config(roots), &timeouts);
        let verifier = args.verify.then(|| client.clone());
        let catalog = Arc::new(Catalog::for_capture(Some(journal)));
        let running = setup::start(
            &args.common,
            Mode::Capture,
            catalog.clone(),
            Some(client),
            store.clone(),
        )
        .await?;
        let env = running.client_env(&root_certs, args.common.proxy_loopback)?;
        if args.common.print_env {
            print!("{}", env.exports());
        }
        Ok(Self {
            running,
            catalog,
            store,
            env,
            verifier,
            response_timeout: timeouts.response,
        })
    }

    /// Runs COMMAND (or a shell) behind the proxy, then waits up to
    /// [`DRAIN`] for the downloads still finishing.
    pub async fn run_build(&self, args: &CaptureArgs) -> Result<Ended> {
        let banner = format!(
            "buildproxy: capturing through {} into {}. Run your build, then exit this shell.",
            self.running.addr,
            args.output.display()
        );
        let ended = child::run(&args.command, &self.env, &banner).await?;
        if !self.running.proxy.idle(DRAIN).await {
            eprintln!(
                "buildproxy: some downloads were still running after {} s; they are not recorded",
                DRAIN.as_secs()
            );
        }
        Ok(ended)
    }
}
