//! `buildproxy capture`: run the build behind the proxy, then write what it
//! downloaded as a `proxy_content.nix` (and, with `--store`, keep the bodies).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};

use super::child::{self, Ended};
use super::lock::OutputLock;
use super::setup;
use crate::catalog::{Catalog, human_size};
use crate::cli::CaptureArgs;
use crate::env::ClientEnv;
use crate::inventory::store::Store;
use crate::inventory::{Entry, journal, nix};
use crate::plugin::bindings::Mode;
use crate::proxy::upstream_client;
use crate::tls::upstream;

/// How long finished downloads may take to be recorded after the command
/// exits (their last bytes may still be in flight).
const DRAIN: Duration = Duration::from_secs(10);

pub async fn run(args: CaptureArgs) -> Result<i32> {
    // Before the journal is read: a running capture's journal is not an
    // interrupted one's.
    let _lock = OutputLock::acquire(&args.output)?;
    // Read what --merge keeps before anything runs: a malformed file must
    // stop us before the build does its work.
    let previous = if args.merge && args.output.exists() {
        nix::parse(&args.output)?
    } else {
        Vec::new()
    };
    // Entries an interrupted capture recorded but never wrote out.
    let journal_path = journal::path_for(&args.output);
    let previous = match journal::read(&journal_path)? {
        Some(recovered) if !recovered.is_empty() => {
            eprintln!(
                "buildproxy: recovering {} entries from {} (an earlier capture was interrupted)",
                recovered.len(),
                journal_path.display()
            );
            merge(previous, recovered).0
        }
        _ => previous,
    };
    if args.recover {
        nix::write_atomic(&args.output, &previous)?;
        std::fs::remove_file(&journal_path).ok();
        eprintln!(
            "buildproxy: wrote {} to {}",
            count(previous.len(), "entry", "entries"),
            args.output.display()
        );
        return Ok(0);
    }
    let journal = journal::Journal::open(&journal_path)?;
    let store = match &args.store {
        Some(dir) => Some(Arc::new(Store::open(dir)?)),
        None => None,
    };
    let (roots, root_certs) = upstream::roots(&args.upstream_ca)?;
    let timeouts = setup::timeouts(&args.common)?;
    let client = upstream_client(upstream::client_config(roots), &timeouts);
    let catalog = Arc::new(Catalog::for_capture(Some(journal)));
    let running = setup::start(
        &args.common,
        Mode::Capture,
        catalog.clone(),
        Some(client),
        store.clone(),
    )
    .await?;
    let env = ClientEnv::prepare(
        running.addr,
        &running.proxy_url(),
        running.ca.cert_pem(),
        &root_certs,
        args.common.proxy_loopback,
    )
    .context("writing the client environment")?;
    if args.common.print_env {
        print!("{}", env.exports());
    }
    let banner = format!(
        "buildproxy: capturing through {} into {}. Run your build, then exit this shell.",
        running.addr,
        args.output.display()
    );
    let ended = child::run(&args.command, &env, &banner).await?;
    if !running.proxy.idle(DRAIN).await {
        eprintln!(
            "buildproxy: some downloads were still running after {} s; they are not recorded",
            DRAIN.as_secs()
        );
    }

    let captured = catalog.entries();
    let (entries, changed) = merge(previous, captured);
    for url in &changed {
        eprintln!("buildproxy: changed since the last capture: {url}");
    }
    if let Err(e) = nix::write_atomic(&args.output, &entries) {
        // The old file is intact; what this run recorded must not be lost
        // with it: make the journal whole, and say how to finish.
        let e = anyhow::Error::new(e);
        return Err(match catalog.take_journal().map(|j| j.close()) {
            Some(Ok(())) => e.context(format!(
                "this capture's entries are kept in {}: once this is fixed, run \
                 `buildproxy capture --recover{} --output {}`",
                journal_path.display(),
                if args.merge { " --merge" } else { "" },
                args.output.display()
            )),
            _ => e,
        });
    }
    if let Some(j) = catalog.take_journal()
        && let Err(e) = j.remove()
    {
        eprintln!("buildproxy: warning: removing the journal: {e}");
    }
    if let Some(store) = &store {
        store.write_index(&entries)?;
    }
    let s = &catalog.stats;
    let skipped = s.completed.load(Ordering::Relaxed).saturating_sub(
        s.added.load(Ordering::Relaxed)
            + s.unchanged.load(Ordering::Relaxed)
            + s.conflicts.load(Ordering::Relaxed),
    );
    let errors = catalog.failures();
    eprintln!(
        "buildproxy: wrote {} to {} ({} new, {} changed, {}); {}, {} skipped, {} conflicting",
        count(entries.len(), "entry", "entries"),
        args.output.display(),
        s.added.load(Ordering::Relaxed),
        changed.len(),
        human_size(Some(s.added_bytes.load(Ordering::Relaxed))),
        count(errors.len(), "error", "errors"),
        skipped,
        s.conflicts.load(Ordering::Relaxed),
    );
    for e in errors {
        eprintln!("buildproxy:   error: {e}");
    }
    let dropped = catalog.errors_dropped.load(Ordering::Relaxed);
    if dropped > 0 {
        eprintln!("buildproxy:   … and {dropped} more errors (only the first ones are kept)");
    }
    if !args.common.patches.is_empty() {
        eprintln!(
            "buildproxy: --patch: the recorded hashes are of the unpatched bodies, as upstream \
             sent them; replay patches them again when given the same --patch"
        );
    }
    setup::report(&running, true).await;
    if let Ended::Signalled(sig) = ended {
        eprintln!("buildproxy: stopped by signal {sig}; what completed before it is recorded");
    }
    Ok(ended.code())
}

/// The previous entries, updated by this run's: new URLs are added, a URL
/// whose recorded status or hash changed takes the new entry and is
/// reported.
fn merge(previous: Vec<Entry>, captured: Vec<Entry>) -> (Vec<Entry>, Vec<String>) {
    let key = |e: &Entry| (e.url.clone(), e.method.clone());
    let mut all: BTreeMap<_, Entry> = previous.into_iter().map(|e| (key(&e), e)).collect();
    let mut changed = Vec::new();
    for e in captured {
        if let Some(old) = all.get(&key(&e)) {
            let hash = |e: &Entry| e.body.as_ref().and_then(|b| b.hash.clone());
            if old.status != e.status || hash(old) != hash(&e) {
                changed.push(e.url.clone());
            }
        }
        all.insert(key(&e), e);
    }
    (all.into_values().collect(), changed)
}

/// "1 entry", "2 entries": the summary is read by people.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
