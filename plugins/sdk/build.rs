//! `bindings` reads `wit/plugin.wit` inside a macro, which cargo does not
//! track: without this, a changed interface would leave plugins built
//! against the old one.

fn main() {
    println!("cargo:rerun-if-changed=../../wit");
}
