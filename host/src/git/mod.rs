//! git's smart HTTP mechanism is the SDK's (`buildproxy_plugin_sdk::git`):
//! the bundled `git` plugin records and answers with it inside wasm, and
//! `buildproxy git-fetch` uses the same code natively, so the canonical form
//! the fetcher writes is the one the plugin recorded.

pub use buildproxy_plugin_sdk::git::*;

/// Runs the real git CLI: the Nix package's check phase, which has no git,
/// skips modules of this name (see nix/package.nix).
#[cfg(test)]
mod needs_tools;
