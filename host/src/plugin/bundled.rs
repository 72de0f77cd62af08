//! The plugins compiled into this binary by build.rs.

use bytes::Bytes;

use super::PluginSpec;

include!(concat!(env!("OUT_DIR"), "/bundled.rs"));

/// The bundled plugins in default chain order, with empty configs. Their
/// bytes are the binary's own (not copied), their SHA-256 computed at build
/// time.
pub fn default_chain() -> Vec<PluginSpec> {
    BUNDLED
        .iter()
        .map(|(name, bytes, sha256)| PluginSpec {
            name: (*name).to_string(),
            bytes: Bytes::from_static(bytes),
            sha256: Some(*sha256),
            config: String::new(),
        })
        .collect()
}
