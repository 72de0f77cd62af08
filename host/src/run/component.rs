//! `buildproxy component IN.wasm OUT.wasm`: a plugin author's build step.
//!
//! `cargo build --target wasm32-unknown-unknown` makes a core module that
//! carries its WIT world in a custom section (wit-bindgen puts it there);
//! `wit-component` wraps it into the component `--plugin` loads. The result
//! is then linked against this host, so a plugin that does not fit (WASI,
//! another interface version, a missing hook) fails here, at build time,
//! with the change to make, rather than when a build starts.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::cli::ComponentArgs;
use crate::plugin::{Limits, Runtime, chain, fit};

/// The first 8 bytes of a core module: magic, version 1.
const CORE_MODULE: &[u8] = b"\0asm\x01\0\0\0";

pub fn run(args: ComponentArgs) -> Result<i32> {
    let bytes =
        std::fs::read(&args.input).with_context(|| format!("reading {}", args.input.display()))?;
    let component = if bytes.starts_with(CORE_MODULE) {
        encode(&args.input, &bytes)?
    } else if bytes.starts_with(b"\0asm") {
        // Already a component: check it and copy it.
        bytes
    } else {
        bail!(
            "{} is not WebAssembly: give the .wasm that `cargo build --target \
             wasm32-unknown-unknown --release` wrote under target/wasm32-unknown-unknown/release/",
            args.input.display()
        );
    };
    let name = args
        .output
        .file_stem()
        .map_or("plugin".into(), |s| s.to_string_lossy().into_owned());
    let runtime = Runtime::new(Limits::default(), None)?;
    chain::link(&runtime, &name, &component, None)?;
    std::fs::write(&args.output, &component)
        .with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!(
        "buildproxy: wrote {} ({} bytes), a plugin that links with this buildproxy ({}@{}); \
         load it with --plugin {}",
        args.output.display(),
        component.len(),
        fit::PACKAGE,
        fit::VERSION,
        args.output.display()
    );
    Ok(0)
}

fn encode(input: &Path, module: &[u8]) -> Result<Vec<u8>> {
    crate::plugin::encode::component_of(module).map_err(|why| {
        let hint = if why.contains("component-type") || why.contains("world") {
            "\n  It carries no WIT world: was it built from a crate that calls \
                 buildproxy_plugin_sdk::export_plugin!(Type) with crate-type = [\"cdylib\"]?"
        } else if why.contains("wasi") {
            "\n  It imports WASI: build with --target wasm32-unknown-unknown and no \
                 files, clocks or environment"
        } else {
            ""
        };
        anyhow::anyhow!(
            "{} cannot be made a buildproxy plugin: {why}{hint}",
            input.display()
        )
    })
}
