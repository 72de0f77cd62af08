//! What earlier captures left for this one: the entries `--merge` keeps,
//! and those an interrupted capture journaled but never wrote out.

use std::path::Path;

use anyhow::Result;

use super::merge::merge;
use super::summary::count;
use crate::cli::CaptureArgs;
use crate::inventory::{Entry, journal, nix};

/// The entries this run starts from. Read before anything runs: a
/// malformed file must stop us before the build does its work.
pub(super) fn entries(args: &CaptureArgs, journal_path: &Path) -> Result<Vec<Entry>> {
    let previous = if args.merge && args.output.exists() {
        nix::parse(&args.output)?
    } else {
        Vec::new()
    };
    Ok(match journal::read(journal_path)? {
        Some(recovered) if !recovered.is_empty() => {
            eprintln!(
                "buildproxy: recovering {} entries from {} (an earlier capture was interrupted)",
                recovered.len(),
                journal_path.display()
            );
            merge(previous, recovered).entries
        }
        _ => previous,
    })
}

/// `capture --recover`: writes out what an interrupted capture recorded,
/// without running anything; the journal is then done with.
pub(super) fn recover(output: &Path, journal_path: &Path, entries: &[Entry]) -> Result<i32> {
    nix::write_atomic(output, entries)?;
    std::fs::remove_file(journal_path).ok();
    eprintln!(
        "buildproxy: wrote {} to {}",
        count(entries.len(), "entry", "entries"),
        output.display()
    );
    Ok(0)
}
