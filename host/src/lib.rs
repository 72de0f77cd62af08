//! buildproxy: an HTTP/HTTPS proxy that captures a build's downloads into
//! Nix `fetchurl` calls and replays them in the sandbox. See ARCHITECTURE.md.

pub mod catalog;
pub mod cli;
pub mod env;
pub mod git;
pub mod inventory;
pub mod patch_rules;
pub mod plugin;
pub mod proxy;
pub mod run;
pub mod tls;
