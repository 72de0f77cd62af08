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

/// How the `git` plugin's inventory entries are keyed: one definition for
/// the plugin that writes them and the host that renders them as
/// `fetchGitObjects` and fetches them again (`check --fetch`).
pub mod entry {
    use super::object::ObjectId;

    /// Not an HTTP method, so no request ever matches one by accident.
    pub const METHOD: &str = "GIT";
    /// The request header of an objects entry: the wanted IDs, sorted,
    /// space-separated.
    pub const WANTS: &str = "git-wants";
    /// The request header (a digest) and header (the `ls-refs` lines) of a
    /// refs entry.
    pub const REFS: &str = "git-refs";

    /// The IDs of a `WANTS` value; `None` when one is not an ID.
    pub fn wants(value: &str) -> Option<Vec<ObjectId>> {
        value
            .split_whitespace()
            .map(|h| ObjectId::from_hex(h).ok())
            .collect()
    }
}
