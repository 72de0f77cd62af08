//! Host bindings for `wit/plugin.wit`. Everything the macro generates lives
//! here so the rest of the host imports one path.

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../wit",
    // Hooks are futures: they yield to the runtime at each epoch tick
    // instead of holding a worker thread for their whole deadline. Imports
    // stay synchronous (they never wait).
    exports: { default: async },
});

pub use self::buildproxy::plugin::inventory::{Entry, PutOutcome};
pub use self::buildproxy::plugin::log::Level;
pub use self::buildproxy::plugin::report::Kind;
pub use self::buildproxy::plugin::requests::Filter as RequestFilter;
pub use self::buildproxy::plugin::types::{
    Blob, Body, Exchange, Mode, Request, Response, ResponseHead, Source,
};
pub use self::exports::buildproxy::plugin::hooks::{HooksWanted, RequestAction, ResponseAction};
