//! `buildproxy capture`: run the build behind the proxy, then write what it
//! downloaded as a `proxy_content.nix` (and, with `--store`, keep the bodies).
//!
//! One step per file: `prior` (what earlier captures left), `session` (the
//! proxy and the build behind it), `merge` (this run into the previous
//! entries), `output` (the files written), `summary` (what a person reads).
//! This file only orders them.

mod merge;
mod output;
mod prior;
mod session;
mod summary;

use anyhow::Result;

use super::child::Ended;
use super::lock::OutputLock;
use super::{setup, verify};
use crate::cli::CaptureArgs;
use crate::inventory::{index, journal};
use session::Session;

pub async fn run(args: CaptureArgs) -> Result<i32> {
    // Before the journal is read: a running capture's journal is not an
    // interrupted one's.
    let _lock = OutputLock::acquire(&args.output)?;
    let journal_path = journal::path_for(&args.output);
    let previous = prior::entries(&args, &journal_path)?;
    if args.recover {
        return prior::recover(&args.output, &journal_path, &previous);
    }
    let session = Session::start(&args, &journal_path).await?;
    let ended = session.run_build(&args).await?;

    let captured = index::without_redundant_heads(session.catalog.entries());
    let merged = output::write(&args, &journal_path, &session, previous, captured.clone())?;
    summary::print(&args, &session.catalog, &merged);
    setup::report(&session.running, true).await;
    if let Ended::Signalled(sig) = ended {
        eprintln!("buildproxy: stopped by signal {sig}; what completed before it is recorded");
    }
    let mut code = ended.code();
    if let Some(client) = &session.verifier
        && !verify::verify_and_report("--verify", client, &captured, session.response_timeout).await
        && code == 0
    {
        code = 1;
    }
    Ok(code)
}
