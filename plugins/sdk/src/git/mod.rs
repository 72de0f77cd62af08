//! git's smart HTTP protocol, as mechanism: pkt-lines, objects, packs, the
//! canonical representation of a fetched commit, and an upload-pack server
//! that answers from it. What to record and when to answer is policy and
//! belongs to a plugin; nothing here opens a socket or decides a miss.
//!
//! It lives in the SDK because both sides use it: the bundled `git` plugin
//! (compiled to wasm) records and answers with it, and the host's
//! `buildproxy git-fetch` fetches the same canonical form natively.

pub mod http;
pub mod object;
pub mod objects;
pub mod pack;
pub mod pktline;
pub mod record;
pub mod upload_pack;

use object::ObjectId;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// A request or response that does not follow the protocol.
    #[error("git protocol: {0}")]
    Protocol(String),
    /// Bytes that claim to be git data but are not what they claim.
    #[error("git data: {0}")]
    Corrupt(String),
    /// An object needed but not held.
    #[error("git object {0} is missing")]
    Missing(ObjectId),
}
