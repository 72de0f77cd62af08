//! The plugins compiled into this binary by build.rs.

use std::sync::Arc;

use super::PluginSpec;

include!(concat!(env!("OUT_DIR"), "/bundled.rs"));

/// The bundled plugins in default chain order, with empty configs.
pub fn default_chain() -> Vec<PluginSpec> {
    BUNDLED
        .iter()
        .map(|(name, bytes)| PluginSpec {
            name: (*name).to_string(),
            bytes: Arc::from(*bytes),
            config: String::new(),
        })
        .collect()
}
