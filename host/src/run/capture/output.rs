//! What a capture leaves on disk: `proxy_content.nix` (this run merged into
//! the previous entries), the journal removed once that file is written,
//! and the `--store` index.

use std::path::Path;

use anyhow::Result;

use super::merge::{Merged, merge};
use super::session::Session;
use crate::cli::CaptureArgs;
use crate::inventory::{Entry, nix};

/// Writes the outputs; returns what the merge made, for the summary.
///
/// If `proxy_content.nix` cannot be written, the journal is closed whole
/// instead of removed, and the error says how to finish with `--recover`.
pub(super) fn write(
    args: &CaptureArgs,
    journal_path: &Path,
    session: &Session,
    previous: Vec<Entry>,
    captured: Vec<Entry>,
) -> Result<Merged> {
    let merged = merge(previous, captured);
    for url in &merged.changed {
        eprintln!("buildproxy: changed since the last capture: {url}");
    }
    for url in &merged.conflicting {
        eprintln!(
            "buildproxy: warning: {} records {url} more than once with different answers; \
             keeping the first, as capture does (`buildproxy check` lists them)",
            args.output.display()
        );
    }
    let catalog = &session.catalog;
    if let Err(e) = nix::write_atomic(&args.output, &merged.entries) {
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
    if let Some(store) = &session.store {
        store.write_index(&merged.entries)?;
    }
    Ok(merged)
}
