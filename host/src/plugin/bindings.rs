//! Host bindings for `wit/plugin.wit`. Everything the macro generates lives
//! here so the rest of the host imports one path.

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../wit",
});

pub use buildproxy::plugin::inventory::{Entry, PutOutcome};
pub use buildproxy::plugin::log::Level;
pub use buildproxy::plugin::types::{
    Blob, Body, Exchange, Mode, Request, Response, ResponseHead, Source,
};
pub use exports::buildproxy::plugin::hooks::{RequestAction, ResponseAction};
