//! buildproxy: an HTTP/HTTPS proxy that captures a build's downloads into
//! Nix `fetchurl` calls and replays them in the sandbox. See ARCHITECTURE.md.
//!
//! Only what the binary needs is public (the CLI, the modes, and `glibc`,
//! which `main` sets the process up with), plus `git`, which the end-to-end
//! tests read packs with; everything else is private so the compiler reports
//! what nothing uses.

mod catalog;
pub mod cli;
mod env;
pub mod git;
pub mod glibc;
mod inventory;
mod patch_rules;
mod plugin;
mod proxy;
pub mod run;
mod tls;
