//! The modes a user runs: each sets up a proxy, runs the user's command (or
//! a shell) in the client environment, and reports at the end.

pub mod capture;
pub mod child;
pub mod component;
pub mod detach;
pub mod proxy;
pub mod replay;
pub mod setup;

use anyhow::Result;

use crate::cli::PluginsArgs;
use crate::plugin::{Limits, Runtime, bundled, fit};

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
