//! The WebAssembly plugin runtime: where policy runs.
//!
//! - `engine`: the wasmtime `Engine` (component model, epoch interruption),
//!   its epoch ticker, and the compiled-component cache.
//! - `bindings`: the `bindgen!` output for `wit/plugin.wit`, in one place.
//! - `state`: what a plugin's imports reach (log, the live inventory).
//! - `chain`: the ordered plugins, their instance pools, and the hook calls
//!   with fault containment: a trapping or runaway plugin fails one exchange.
//! - `bundled`: the plugins embedded in the binary.
//!
//! This module never does I/O on behalf of a plugin: plugins import only
//! `log` and `inventory`, no WASI is linked.

pub mod bindings;
mod bodies;
pub mod bundled;
mod cache_trust;
pub mod chain;
mod convert;
pub mod encode;
pub mod engine;
pub mod fault;
pub mod fit;
mod lane;
mod recorded;
pub mod state;

pub use chain::Chain;
pub use engine::{Limits, Runtime};

/// Where a plugin's component bytes come from, and its config string.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    pub name: String,
    pub bytes: bytes::Bytes,
    /// The SHA-256 of `bytes`, when known without hashing them (bundled).
    pub sha256: Option<[u8; 32]>,
    pub config: String,
}

impl PluginSpec {
    /// `--plugin PATH.wasm[=CONFIG]`: the name is the file stem.
    pub fn from_arg(arg: &str) -> Result<Self, PluginError> {
        let (path, config) = match arg.split_once('=') {
            Some((p, c)) => (p, c.to_string()),
            None => (arg, String::new()),
        };
        let bytes = std::fs::read(path).map_err(|source| PluginError::Read {
            path: path.to_string(),
            source,
        })?;
        let stem = std::path::Path::new(path)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.to_string());
        let name = without_store_hash(&stem).to_string();
        Ok(Self {
            name,
            bytes: bytes.into(),
            sha256: None,
            config,
        })
    }
}

/// `abc…xyz-pin.wasm` in the Nix store is the plugin `pin`: the 32-character
/// store hash says where the file lives, not what the plugin is.
fn without_store_hash(stem: &str) -> &str {
    match stem.split_once('-') {
        Some((hash, rest))
            if hash.len() == 32
                && !rest.is_empty()
                && hash.bytes().all(|b| b.is_ascii_alphanumeric()) =>
        {
            rest
        }
        _ => stem,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("reading plugin {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "plugin {name} is not a buildproxy component: {reason}\n  \
         A plugin must be a WebAssembly *component* (wrap a core module with `buildproxy component IN.wasm OUT.wasm`)."
    )]
    Compile { name: String, reason: String },
    /// `reason` says what to change (see `fit`).
    #[error(
        "plugin {name} does not fit this buildproxy's interface ({}@{}): {reason}",
        fit::PACKAGE,
        fit::VERSION
    )]
    Link { name: String, reason: String },
    #[error(
        "plugin {name} rejected its config {}: {reason}\n  \
         Change what follows `=` in `--plugin PATH.wasm=CONFIG` (or `--plugin-config {name}=CONFIG`); the plugin's README says what it takes.",
        elide(config)
    )]
    Config {
        name: String,
        config: String,
        reason: String,
    },
    #[error("plugin {name} failed while starting: {reason}")]
    Start { name: String, reason: String },
    #[error("setting up the wasm engine: {0}")]
    Engine(String),
}

/// A config as a quoted string short enough for one message.
fn elide(config: &str) -> String {
    const MAX: usize = 120;
    match config.char_indices().nth(MAX) {
        None => format!("{config:?}"),
        Some((at, _)) => format!("{:?}… ({} bytes)", &config[..at], config.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::without_store_hash;

    #[test]
    fn a_store_path_names_the_plugin_by_its_file_name() {
        assert_eq!(
            without_store_hash("0c5cdy1a2kx9lbm6f3gmmk3ih0ljfhkq-pin"),
            "pin"
        );
        assert_eq!(without_store_hash("pin-commits"), "pin-commits");
        assert_eq!(without_store_hash("my-plugin"), "my-plugin");
    }
}
