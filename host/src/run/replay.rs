//! `buildproxy replay`: answer a build's downloads from captured content.
//! The proxy has no upstream client in this mode: it cannot reach the
//! network, whatever a plugin asks.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Result;

use super::child::{self, Ended};
use super::{detach, setup};
use crate::catalog::Catalog;
use crate::cli::ReplayArgs;
use crate::inventory::prepared::{self, Prepared};
use crate::inventory::{content, store::Store};
use crate::plugin::bindings::Mode;

pub async fn run(args: ReplayArgs) -> Result<i32> {
    if args.detach {
        return detach::launch();
    }
    let catalog = Arc::new(match (&args.content, &args.store) {
        (Some(file), _) if prepared::is_prepared(file) => {
            Catalog::from_prepared(Prepared::open(file, None, &args.allow_roots)?)
        }
        (Some(file), _) => Catalog::from_entries(content::load(file, &args.allow_roots)?),
        (None, Some(dir)) => match Store::open_prepared(dir)? {
            Some(prepared) => Catalog::from_prepared(prepared),
            None => Catalog::from_entries(Store::load(dir)?),
        },
        (None, None) => unreachable!("clap requires --content or --store"),
    });
    let running = setup::start(&args.common, Mode::Replay, catalog.clone(), None, None).await?;
    let env = running.client_env(&[], args.common.proxy_loopback)?;
    tracing::info!("replaying {} entries on {}", catalog.len(), running.addr);

    let code = if let Some(pid) = args.serve_for_pid {
        detach::serve(&env, pid).await?;
        0
    } else if args.command.is_empty() {
        print!("{}", env.exports());
        eprintln!(
            "buildproxy: replaying {} entries on {}; Ctrl-C to stop",
            catalog.len(),
            running.addr
        );
        128 + child::until_signal().await?
    } else {
        if args.common.print_env {
            print!("{}", env.exports());
        }
        let ended = child::run(&args.command, &env, "").await?;
        if let Ended::Signalled(sig) = ended {
            eprintln!("buildproxy: stopped by signal {sig}");
        }
        ended.code()
    };
    setup::report(&running, true).await;
    let errors = catalog.errors();
    if !errors.is_empty() {
        eprintln!(
            "buildproxy: {} failed (a body that failed verification is never served whole):",
            if errors.len() == 1 {
                "1 response".to_string()
            } else {
                format!("{} responses", errors.len())
            }
        );
        for e in &errors {
            eprintln!("buildproxy:   {e}");
        }
        more(catalog.errors_dropped.load(Ordering::Relaxed));
    }
    let misses = catalog.misses();
    if !misses.is_empty() {
        eprintln!(
            "buildproxy: {} not in the captured content:",
            if misses.len() == 1 {
                "1 request was".to_string()
            } else {
                format!("{} requests were", misses.len())
            }
        );
        for (method, url) in &misses {
            eprintln!("buildproxy:   {method} {url}");
        }
        more(catalog.misses_dropped.load(Ordering::Relaxed));
        let replayable = |m: &str| m == "GET" || m == "HEAD";
        if misses.iter().any(|(m, _)| replayable(m)) {
            eprintln!(
                "buildproxy: re-run the capture (buildproxy capture -- <build>) so it records \
                 the GET and HEAD requests, or make the build not need them."
            );
        }
        if misses.iter().any(|(m, _)| !replayable(m)) {
            eprintln!(
                "buildproxy: the other requests send data (POST, PUT, …) and cannot be replayed: \
                 a capture records only GET and HEAD. Make the build not send them: for npm, \
                 --no-audit --no-fund (npm_config_audit=false); for git, Nix's fetchgit."
            );
        }
        if args.strict && code == 0 {
            eprintln!("buildproxy: --strict: failing because of the misses above");
            return Ok(1);
        }
    }
    if args.strict && code == 0 && !errors.is_empty() {
        eprintln!("buildproxy: --strict: failing because of the errors above");
        return Ok(1);
    }
    Ok(code)
}

/// The count of what was not kept one by one (`catalog::KEPT`).
fn more(dropped: u64) {
    if dropped > 0 {
        eprintln!("buildproxy:   … and {dropped} more (only the first ones are kept)");
    }
}
