//! The fixed-output representation of one commit of one repository: the
//! objects a checkout of it needs, in a canonical encoding.
//!
//! ```text
//! buildproxy-git-objects 1\n
//! <40-hex id> <type> <size>\n<content>\n     one per object, sorted by id
//! ```
//!
//! Why its hash never changes for the same commit: every object's content
//! is fixed by its ID (the ID is the SHA-1 of the content), the set is
//! fixed by the root (a commit, its tree and everything under it, without
//! parents or submodule commits; a tag adds itself), and the encoding
//! leaves nothing to choose: sorted by ID, uncompressed, no deltas. A
//! server's pack, by contrast, varies with its git version, its
//! compression level, its delta choices and object order.

use std::collections::{BTreeMap, BTreeSet};

use super::GitError;
use super::object::{Kind, Object, ObjectId, id_of};

const MAGIC: &[u8] = b"buildproxy-git-objects 1\n";

/// The objects `root` needs, looked up in `lookup`: `Err` names the first
/// one missing.
pub fn closure(
    root: ObjectId,
    lookup: &dyn Fn(&ObjectId) -> Option<Object>,
) -> Result<BTreeMap<ObjectId, Object>, GitError> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root];
    while let Some(id) = todo.pop() {
        if out.contains_key(&id) {
            continue;
        }
        let obj = lookup(&id).ok_or(GitError::Missing(id))?;
        todo.extend(obj.links()?);
        out.insert(id, obj);
    }
    Ok(out)
}

/// The canonical encoding of `objects`.
pub fn encode(objects: &BTreeMap<ObjectId, Object>) -> Vec<u8> {
    let size: usize = objects.values().map(|o| o.data.len() + 64).sum();
    let mut out = Vec::with_capacity(MAGIC.len() + size);
    out.extend_from_slice(MAGIC);
    for (id, o) in objects {
        out.extend_from_slice(format!("{id} {} {}\n", o.kind.name(), o.data.len()).as_bytes());
        out.extend_from_slice(&o.data);
        out.push(b'\n');
    }
    out
}

/// Reads an encoding back, checking that every object has its ID, that
/// they are in canonical order, and that nothing else is in the file.
pub fn decode(bytes: &[u8]) -> Result<BTreeMap<ObjectId, Object>, GitError> {
    let bad = |why: &str| GitError::Corrupt(format!("git objects file: {why}"));
    let mut rest = bytes.strip_prefix(MAGIC).ok_or_else(|| bad("no header"))?;
    let mut out = BTreeMap::new();
    let mut last: Option<ObjectId> = None;
    while !rest.is_empty() {
        let nl = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| bad("truncated"))?;
        let head = std::str::from_utf8(&rest[..nl]).map_err(|_| bad("bad header line"))?;
        let mut parts = head.split(' ');
        let (Some(id), Some(kind), Some(size), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("bad header line"));
        };
        let id = ObjectId::from_hex(id)?;
        let kind = Kind::from_name(kind).ok_or_else(|| bad("bad object type"))?;
        let size: usize = size.parse().map_err(|_| bad("bad size"))?;
        let data = rest
            .get(nl + 1..nl + 1 + size)
            .ok_or_else(|| bad("truncated"))?;
        if rest.get(nl + 1 + size) != Some(&b'\n') {
            return Err(bad("object not followed by a newline"));
        }
        if id_of(kind, data) != id {
            return Err(GitError::Corrupt(format!(
                "git objects file: object {id} does not hash to its ID: the file was changed"
            )));
        }
        if last.is_some_and(|l| l >= id) {
            return Err(bad("objects not sorted by ID"));
        }
        last = Some(id);
        out.insert(id, Object::new(kind, data.to_vec()));
        rest = &rest[nl + 2 + size..];
    }
    Ok(out)
}

/// The commits among `objects` whose parents are not all there: where the
/// history replay can serve is cut (git calls them shallow).
pub fn shallow_commits(
    objects: &BTreeMap<ObjectId, Object>,
) -> Result<BTreeSet<ObjectId>, GitError> {
    let mut out = BTreeSet::new();
    for (id, o) in objects {
        if o.kind == Kind::Commit && o.commit_parents()?.iter().any(|p| !objects.contains_key(p)) {
            out.insert(*id);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (ObjectId, BTreeMap<ObjectId, Object>) {
        let blob = Object::new(Kind::Blob, b"hi\n".to_vec());
        let mut tree = b"100644 a\0".to_vec();
        tree.extend_from_slice(&blob.id().0);
        let tree = Object::new(Kind::Tree, tree);
        let commit = Object::new(
            Kind::Commit,
            format!("tree {}\nparent {}\n\nm\n", tree.id(), ObjectId([1; 20])).into_bytes(),
        );
        let all: BTreeMap<_, _> = [blob, tree, commit.clone()]
            .into_iter()
            .map(|o| (o.id(), o))
            .collect();
        (commit.id(), all)
    }

    #[test]
    fn closure_encodes_canonically_and_decodes_checked() {
        let (root, all) = sample();
        let set = closure(root, &|id| all.get(id).cloned()).unwrap();
        assert_eq!(set, all);
        let bytes = encode(&set);
        assert_eq!(decode(&bytes).unwrap(), set);
        assert_eq!(shallow_commits(&set).unwrap(), BTreeSet::from([root]));
        // One changed byte of content is caught.
        let mut bad = bytes.clone();
        let at = bytes.windows(3).position(|w| w == b"hi\n").unwrap();
        bad[at] = b'H';
        assert!(
            decode(&bad)
                .unwrap_err()
                .to_string()
                .contains("does not hash to its ID")
        );
        let missing = closure(root, &|id| (*id == root).then(|| all[&root].clone()));
        assert!(matches!(missing, Err(GitError::Missing(_))));
    }
}
