//! git objects: what a commit, tree, blob or tag is, its ID (the SHA-1 of
//! `"<type> <size>\0<content>"`), and the links between them.
//!
//! An object's ID is a hash of its exact bytes, so a set of objects named by
//! ID has one content whatever server or git version it came from: the
//! property the fixed-output representation rests on (see `objects`).

use std::fmt;

use sha1::{Digest, Sha1};

use super::GitError;

/// A SHA-1 object ID.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId(pub [u8; 20]);

impl ObjectId {
    /// Parses 40 hex digits (either case).
    pub fn from_hex(text: &str) -> Result<Self, GitError> {
        let bad = || GitError::Protocol(format!("{text:?} is not a 40-digit object ID"));
        let bytes = text.as_bytes();
        if bytes.len() != 40 {
            return Err(bad());
        }
        let mut out = [0u8; 20];
        for (i, pair) in bytes.chunks(2).enumerate() {
            let s = std::str::from_utf8(pair).map_err(|_| bad())?;
            out[i] = u8::from_str_radix(s, 16).map_err(|_| bad())?;
        }
        Ok(ObjectId(out))
    }

    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

/// The four object types, numbered as in a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Commit = 1,
    Tree = 2,
    Blob = 3,
    Tag = 4,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Commit => "commit",
            Kind::Tree => "tree",
            Kind::Blob => "blob",
            Kind::Tag => "tag",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Some(match name {
            "commit" => Kind::Commit,
            "tree" => Kind::Tree,
            "blob" => Kind::Blob,
            "tag" => Kind::Tag,
            _ => return None,
        })
    }

    pub fn from_pack_type(t: u8) -> Option<Kind> {
        Some(match t {
            1 => Kind::Commit,
            2 => Kind::Tree,
            3 => Kind::Blob,
            4 => Kind::Tag,
            _ => return None,
        })
    }
}

/// One object: its type and content (without the `"<type> <size>\0"` header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub kind: Kind,
    pub data: Vec<u8>,
}

impl Object {
    pub fn new(kind: Kind, data: Vec<u8>) -> Self {
        Object { kind, data }
    }

    /// The ID git gives these bytes.
    pub fn id(&self) -> ObjectId {
        id_of(self.kind, &self.data)
    }

    /// The objects this one needs to be complete, without history: a
    /// commit's tree (not its parents), a tree's entries (not submodule
    /// commits, which live in another repository), a tag's target.
    pub fn links(&self) -> Result<Vec<ObjectId>, GitError> {
        match self.kind {
            Kind::Blob => Ok(Vec::new()),
            Kind::Commit => Ok(vec![self.commit_tree()?]),
            Kind::Tag => Ok(vec![self.tag_target()?.0]),
            Kind::Tree => Ok(self
                .tree_entries()?
                .into_iter()
                .filter(|e| e.mode != GITLINK)
                .map(|e| e.id)
                .collect()),
        }
    }

    /// The header field `name` of a commit or tag.
    fn header(&self, name: &str) -> Option<&str> {
        let text = std::str::from_utf8(&self.data).ok()?;
        text.lines()
            .take_while(|l| !l.is_empty())
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
    }

    pub fn commit_tree(&self) -> Result<ObjectId, GitError> {
        let tree = self
            .header("tree")
            .ok_or_else(|| self.malformed("no tree"))?;
        ObjectId::from_hex(tree)
    }

    /// A commit's parents.
    pub fn commit_parents(&self) -> Result<Vec<ObjectId>, GitError> {
        let text = std::str::from_utf8(&self.data).map_err(|_| self.malformed("not UTF-8"))?;
        text.lines()
            .take_while(|l| !l.is_empty())
            .filter_map(|l| l.strip_prefix("parent "))
            .map(ObjectId::from_hex)
            .collect()
    }

    /// What an annotated tag points at.
    pub fn tag_target(&self) -> Result<(ObjectId, Kind), GitError> {
        let id = self
            .header("object")
            .ok_or_else(|| self.malformed("no object"))?;
        let kind = self
            .header("type")
            .and_then(Kind::from_name)
            .ok_or_else(|| self.malformed("no type"))?;
        Ok((ObjectId::from_hex(id)?, kind))
    }

    pub fn tree_entries(&self) -> Result<Vec<TreeEntry>, GitError> {
        let mut out = Vec::new();
        let mut rest = &self.data[..];
        while !rest.is_empty() {
            let sp = rest
                .iter()
                .position(|&b| b == b' ')
                .ok_or_else(|| self.malformed("entry without mode"))?;
            let nul = rest
                .iter()
                .position(|&b| b == 0)
                .ok_or_else(|| self.malformed("entry without name"))?;
            if nul < sp || rest.len() < nul + 21 {
                return Err(self.malformed("truncated entry"));
            }
            let mode = std::str::from_utf8(&rest[..sp])
                .ok()
                .and_then(|m| u32::from_str_radix(m, 8).ok())
                .ok_or_else(|| self.malformed("bad mode"))?;
            let mut id = [0u8; 20];
            id.copy_from_slice(&rest[nul + 1..nul + 21]);
            out.push(TreeEntry {
                mode,
                name: rest[sp + 1..nul].to_vec(),
                id: ObjectId(id),
            });
            rest = &rest[nul + 21..];
        }
        Ok(out)
    }

    fn malformed(&self, why: &str) -> GitError {
        GitError::Corrupt(format!("{} {}: {why}", self.kind.name(), self.id()))
    }
}

/// A tree's mode for a submodule: the entry names a commit of another
/// repository.
pub const GITLINK: u32 = 0o160000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    pub mode: u32,
    pub name: Vec<u8>,
    pub id: ObjectId,
}

/// The ID of an object of `kind` with content `data`.
pub fn id_of(kind: Kind, data: &[u8]) -> ObjectId {
    let mut h = Sha1::new();
    h.update(format!("{} {}\0", kind.name(), data.len()).as_bytes());
    h.update(data);
    ObjectId(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_git_ids() {
        // `git hash-object -t blob /dev/null`, and of "hello\n".
        assert_eq!(
            id_of(Kind::Blob, b"").hex(),
            "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
        );
        assert_eq!(
            id_of(Kind::Blob, b"hello\n").hex(),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        // The empty tree.
        assert_eq!(
            id_of(Kind::Tree, b"").hex(),
            "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
        );
        let id = ObjectId::from_hex("CE013625030BA8DBA906F756967F9E9CA394464A").unwrap();
        assert_eq!(id.hex(), "ce013625030ba8dba906f756967f9e9ca394464a");
        assert!(ObjectId::from_hex("ce01").is_err());
    }

    #[test]
    fn links_skip_parents_and_submodules() {
        let blob = id_of(Kind::Blob, b"hello\n");
        let sub = ObjectId([9; 20]);
        let mut tree = Vec::new();
        tree.extend_from_slice(b"100644 a.txt\0");
        tree.extend_from_slice(&blob.0);
        tree.extend_from_slice(b"160000 vendor\0");
        tree.extend_from_slice(&sub.0);
        let tree = Object::new(Kind::Tree, tree);
        assert_eq!(tree.links().unwrap(), vec![blob]);
        let commit = Object::new(
            Kind::Commit,
            format!(
                "tree {}\nparent {}\nauthor a <a> 0 +0000\n\nmsg\ntree {}\n",
                tree.id(),
                sub,
                sub
            )
            .into_bytes(),
        );
        assert_eq!(commit.links().unwrap(), vec![tree.id()]);
        assert_eq!(commit.commit_parents().unwrap(), vec![sub]);
        let tag = Object::new(
            Kind::Tag,
            format!("object {}\ntype commit\ntag v1\n\nmsg\n", commit.id()).into_bytes(),
        );
        assert_eq!(tag.tag_target().unwrap(), (commit.id(), Kind::Commit));
    }
}
