//! `buildproxy capture`: run the build behind the proxy, then write what it
//! downloaded as a `proxy_content.nix` (and, with `--store`, keep the bodies).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};

use super::child::{self, Ended};
use super::lock::OutputLock;
use super::{setup, verify};
use crate::catalog::{Catalog, human_size};
use crate::cli::CaptureArgs;
use crate::env::ClientEnv;
use crate::inventory::index::{Index, Insert, normalize_url};
use crate::inventory::store::Store;
use crate::inventory::{Entry, index, journal, nix};
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
            merge(previous, recovered).entries
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

    let captured = index::without_redundant_heads(catalog.entries());
    let Merged {
        entries,
        new,
        changed,
        kept,
        conflicting,
    } = merge(previous, captured.clone());
    for url in &changed {
        eprintln!("buildproxy: changed since the last capture: {url}");
    }
    for url in &conflicting {
        eprintln!(
            "buildproxy: warning: {} records {url} more than once with different answers; \
             keeping the first, as capture does (`buildproxy check` lists them)",
            args.output.display()
        );
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
    let mut errors = catalog.errors();
    errors.extend(catalog.abandoned_unrecorded());
    eprintln!(
        "buildproxy: wrote {} to {} ({new} new, {} changed, {kept} kept; {} downloaded); {}, {} \
         skipped, {} conflicting",
        count(entries.len(), "entry", "entries"),
        args.output.display(),
        changed.len(),
        human_size(Some(s.added_bytes.load(Ordering::Relaxed))),
        count(errors.len(), "error", "errors"),
        skipped,
        s.conflicts.load(Ordering::Relaxed) + conflicting.len() as u64,
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
    setup::report(&running.proxy);
    if let Ended::Signalled(sig) = ended {
        eprintln!("buildproxy: stopped by signal {sig}; what completed before it is recorded");
    }
    let mut code = ended.code();
    if let Some(client) = verifier
        && !verify::verify_and_report("--verify", &client, &captured, timeouts.response).await
        && code == 0
    {
        code = 1;
    }
    Ok(code)
}

/// What `merge` made of the previous file and this run.
#[derive(Debug)]
struct Merged {
    entries: Vec<Entry>,
    /// Entries the previous file did not have.
    new: usize,
    /// URLs this run recorded with another status or hash than before.
    changed: Vec<String>,
    /// Previous entries left as they were (captured again alike, or not at all).
    kept: usize,
    /// URLs the previous file records twice with different answers.
    conflicting: Vec<String>,
}

/// The previous entries, updated by this run's: new requests (or new
/// representations of one) are added, an entry whose recorded status or
/// hash changed takes the new one and is reported. Within the previous
/// file, a request recorded twice keeps its first recording, as capture
/// keeps the first answer it saw (the same [`Index`] rule), and differing
/// duplicates are reported.
fn merge(previous: Vec<Entry>, captured: Vec<Entry>) -> Merged {
    let mut old = Index::new();
    let mut conflicting = Vec::new();
    for e in previous {
        let url = e.url.clone();
        if let Insert::Conflict { .. } = old.insert(e) {
            conflicting.push(url);
        }
    }
    let key = |e: &Entry| {
        (
            normalize_url(&e.url),
            e.method.to_ascii_uppercase(),
            e.request_headers.clone(),
        )
    };
    let mut all: BTreeMap<_, Entry> = old.iter().map(|e| (key(e), e.clone())).collect();
    let before = all.len();
    let (mut new, mut changed) = (0, Vec::new());
    for e in captured {
        match all.get(&key(&e)) {
            None => new += 1,
            Some(old) => {
                let hash = |e: &Entry| e.body.as_ref().and_then(|b| b.hash.clone());
                if old.status != e.status || hash(old) != hash(&e) {
                    changed.push(e.url.clone());
                }
            }
        }
        all.insert(key(&e), e);
    }
    Merged {
        entries: all.into_values().collect(),
        new,
        kept: before - changed.len(),
        changed,
        conflicting,
    }
}

/// "1 entry", "2 entries": the summary is read by people.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Body;

    fn entry(url: &str, hash: &str, accept: Option<&str>) -> Entry {
        Entry {
            method: "GET".into(),
            url: url.into(),
            fetch_url: None,
            name: None,
            status: 200,
            headers: BTreeMap::new(),
            request_headers: accept
                .map(|a| BTreeMap::from([("accept".to_string(), a.to_string())]))
                .unwrap_or_default(),
            body: Some(Body {
                hash: Some(hash.into()),
                size: None,
                file: None,
            }),
        }
    }

    #[test]
    fn merge_counts_new_changed_and_kept_separately_per_representation() {
        let previous = vec![
            entry("https://e.org/a", "h1", None),
            entry("https://e.org/b", "h2", None),
            entry("https://e.org/c", "h3", None),
        ];
        let captured = vec![
            entry("https://e.org/a", "h1", None),
            entry("https://e.org/b", "h2-new", None),
            entry("https://e.org/a", "json", Some("application/json")),
            entry("https://e.org/d", "h4", None),
        ];
        let m = merge(previous, captured);
        assert_eq!((m.new, m.changed.len(), m.kept), (2, 1, 2), "{m:?}");
        assert_eq!(m.changed, ["https://e.org/b"]);
        assert_eq!(m.entries.len(), 5);
    }
}
