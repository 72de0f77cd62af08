//! TLS both ways: the certificate authority that intercepts clients'
//! tunnels, and the client configuration for talking to upstreams.

pub mod ca;
pub mod upstream;

pub use ca::Authority;
