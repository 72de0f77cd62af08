//! The lines a person reads at the end of a capture: what was written,
//! what failed (each download once), and what `--patch` means for the
//! recorded hashes.

use std::sync::atomic::Ordering;

use super::merge::Merged;
use crate::catalog::{Catalog, human_size};
use crate::cli::CaptureArgs;

/// Prints the summary of a capture whose outputs are written.
pub(super) fn print(args: &CaptureArgs, catalog: &Catalog, merged: &Merged) {
    let s = &catalog.stats;
    let skipped = s.completed.load(Ordering::Relaxed).saturating_sub(
        s.added.load(Ordering::Relaxed)
            + s.unchanged.load(Ordering::Relaxed)
            + s.conflicts.load(Ordering::Relaxed),
    );
    // Each failed download once (the host and plugins report through one
    // channel), then the bodies clients abandoned that nobody got whole.
    let mut errors = catalog.errors();
    errors.extend(catalog.abandoned_unrecorded());
    eprintln!(
        "buildproxy: wrote {} to {} ({} new, {} changed, {} kept; {} downloaded); {}, {} \
         skipped, {} conflicting",
        count(merged.entries.len(), "entry", "entries"),
        args.output.display(),
        merged.new,
        merged.changed.len(),
        merged.kept,
        human_size(Some(s.added_bytes.load(Ordering::Relaxed))),
        count(errors.len(), "error", "errors"),
        skipped,
        s.conflicts.load(Ordering::Relaxed) + merged.conflicting.len() as u64,
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
}

/// "1 entry", "2 entries": the summary is read by people.
pub(super) fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
