//! Builds the plugin crates for `wasm32-unknown-unknown`, wraps each core
//! module into a component with `wit-component`, and writes them to OUT_DIR:
//! bundled plugins are embedded in the binary (`bundled.rs`), test fixtures
//! are left there for the tests to load by path.
//!
//! The nested cargo uses its own target dir (so it never waits on the outer
//! build's lock) inside the outer one (so it is shared and cached).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

use sha2::{Digest, Sha256};

#[path = "src/plugin/encode.rs"]
mod encode;

/// Plugins embedded in the host binary, in default chain order.
const BUNDLED: &[&str] = &["git", "redirect", "capture", "replay", "patch"];
/// Plugins built only for the tests.
const FIXTURES: &[&str] = &["misbehave"];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    println!("cargo:rerun-if-changed={}", root.join("plugins").display());
    println!("cargo:rerun-if-changed={}", root.join("wit").display());

    check_wasm_target();

    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out.
    let target_dir = out
        .ancestors()
        .nth(4)
        .map(|t| t.join("wasm-plugins"))
        .unwrap_or_else(|| out.join("wasm-plugins"));
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--profile",
            "plugin",
            "--target",
            "wasm32-unknown-unknown",
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    for name in BUNDLED.iter().chain(FIXTURES) {
        cmd.args(["-p", &format!("buildproxy-plugin-{name}")]);
    }
    // Flags meant for the host build must not leak into the wasm build.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .expect("could not run cargo to build the plugins");
    if !status.success() {
        panic!("building the wasm plugins failed (see the cargo output above)");
    }

    let built = target_dir.join("wasm32-unknown-unknown/plugin");
    let mut bundled =
        String::from("/// Bundled plugins: (name, component bytes), in default chain order.\n");
    bundled.push_str(
        "/// The SHA-256 of each is computed here, so a start does not hash them\n\
         /// to find their compiled form in the cache.\n",
    );
    bundled.push_str("pub const BUNDLED: &[(&str, &[u8], [u8; 32])] = &[\n");
    for name in BUNDLED.iter().chain(FIXTURES) {
        let module = built.join(format!("buildproxy_plugin_{name}.wasm"));
        let dest = out.join(format!("{name}.wasm"));
        let digest = Sha256::digest(componentize(&module, &dest));
        if BUNDLED.contains(name) {
            bundled.push_str(&format!(
                "    ({name:?}, include_bytes!({:?}), {:?}),\n",
                dest.display().to_string(),
                digest.as_slice()
            ));
        }
    }
    bundled.push_str("];\n");
    fs::write(out.join("bundled.rs"), bundled).unwrap();
}

/// Writes the component of `module` to `dest`; returns its bytes.
fn componentize(module: &Path, dest: &Path) -> Vec<u8> {
    let bytes = fs::read(module).unwrap_or_else(|e| panic!("reading {}: {e}", module.display()));
    let component = encode::component_of(&bytes)
        .unwrap_or_else(|e| panic!("making a component of {}: {e}", module.display()));
    fs::write(dest, &component).unwrap();
    component
}

/// Fails early, with the fix, when the wasm standard library is missing.
fn check_wasm_target() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if let Some(sysroot) = sysroot {
        let lib = Path::new(&sysroot).join("lib/rustlib/wasm32-unknown-unknown");
        if !lib.exists() {
            panic!(
                "\n\nbuildproxy's plugins are built for wasm32-unknown-unknown, which this \
                 toolchain lacks.\nInstall it with:\n\n    rustup target add wasm32-unknown-unknown\n\n"
            );
        }
    }
}
