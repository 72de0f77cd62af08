//! End-to-end tests: the real `buildproxy` binary, real clients (curl and
//! others), upstreams on 127.0.0.1 with a CA made at run time.
//!
//! One test binary (one link of wasmtime) with a module per capability.

mod support;

mod capture_replay;
mod check;
mod clients;
mod environment;
mod git;
mod go;
mod load;
mod nix;
mod patch;
mod prepared;
mod proxy;
mod quickstart;
mod redirect;
mod registries;
mod reliability;
mod security;
mod suite;
