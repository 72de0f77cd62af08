//! The modes a user runs: each sets up a proxy, runs the user's command (or
//! a shell) in the client environment, and reports at the end.

pub mod capture;
pub mod check;
mod child;
pub mod component;
mod detach;
pub mod git_fetch;
mod lock;
pub mod proxy;
pub mod replay;
mod setup;
pub mod verify;

use anyhow::Result;

use crate::cli::{PluginsArgs, PrepareArgs};
use crate::inventory::prepared;
use crate::plugin::{Limits, Runtime, bundled, fit};

/// `buildproxy prepare`: the whole-content work of replay's start, done
/// once (in a Nix derivation) instead of at every start.
pub fn prepare(args: PrepareArgs) -> Result<i32> {
    let n = prepared::prepare(&args.content, &args.output, &args.allow_roots)?;
    eprintln!(
        "buildproxy: prepared {n} {} into {}",
        if n == 1 { "entry" } else { "entries" },
        args.output.display()
    );
    Ok(0)
}

/// `buildproxy plugins`: what is bundled, or precompile it for packaging.
pub fn plugins(args: PluginsArgs) -> Result<i32> {
    let wit_version = format!("{}@{}", fit::PACKAGE, fit::VERSION);
    match args.precompile {
        None => {
            for spec in bundled::default_chain() {
                println!(
                    "{:<10} {:>8} bytes  {wit_version}",
                    spec.name,
                    spec.bytes.len()
                );
            }
        }
        Some(dir) => {
            let runtime = Runtime::new(Limits::default(), None)?;
            for spec in bundled::default_chain() {
                let path = runtime.precompile_into(&dir, &spec.name, &spec.bytes)?;
                println!("{} -> {}", spec.name, path.display());
            }
        }
    }
    Ok(0)
}
