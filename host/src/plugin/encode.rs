//! A plugin's core wasm module made a component: one implementation for the
//! bundled plugins (host/build.rs includes this file by path, as a build
//! script cannot depend on its own crate) and for `buildproxy component`.
//! It depends on nothing but `wit-component`, so it compiles in both.

/// The component of `module` (validated); the error is wit-component's
/// whole chain, which callers turn into a message with the fix.
pub fn component_of(module: &[u8]) -> Result<Vec<u8>, String> {
    wit_component::ComponentEncoder::default()
        .module(module)
        .and_then(|e| e.validate(true).encode())
        .map_err(|e| format!("{e:#}"))
}
