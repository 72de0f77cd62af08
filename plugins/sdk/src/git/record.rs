//! Reading what a real git server said, to record it: the refs of an
//! advertisement or `ls-refs` answer, the objects a `git-upload-pack`
//! request wanted, and the pack in its answer, turned into the canonical
//! form of each wanted commit (see `objects`).

use std::collections::{BTreeMap, HashMap};

use super::GitError;
use super::object::{Object, ObjectId};
use super::objects::closure;
use super::pack::read_pack;
use super::pktline::{Pkt, Reader};
use super::upload_pack::Ref;

/// The refs of a v0 advertisement (`info/refs?service=git-upload-pack`),
/// HEAD's symref target included; empty for a v2 capability advertisement,
/// whose refs come from `ls-refs`.
pub fn advertised_refs(body: &[u8]) -> Result<Vec<Ref>, GitError> {
    let mut r = Reader::new(body);
    let mut refs: Vec<Ref> = Vec::new();
    let mut symrefs = Vec::new();
    while let Some(p) = r.next_pkt()? {
        let Some(line) = p.line() else { continue };
        if line.starts_with(b"# service=") || line == b"version 2" || line.starts_with(b"shallow ")
        {
            continue;
        }
        let (line, caps) = match line.iter().position(|&b| b == 0) {
            Some(nul) => (&line[..nul], Some(&line[nul + 1..])),
            None => (line, None),
        };
        if let Some(caps) = caps {
            for cap in String::from_utf8_lossy(caps).split(' ') {
                if let Some((from, to)) =
                    cap.strip_prefix("symref=").and_then(|s| s.split_once(':'))
                {
                    symrefs.push((from.to_owned(), to.to_owned()));
                }
            }
        }
        let text = std::str::from_utf8(line)
            .map_err(|_| GitError::Protocol("a ref line is not UTF-8".into()))?;
        let Some((id, name)) = text.split_once(' ') else {
            // A v2 capability line (`agent=…`, `fetch=…`).
            continue;
        };
        let Ok(id) = ObjectId::from_hex(id) else {
            continue;
        };
        if name == "capabilities^{}" {
            continue;
        }
        if let Some(base) = name.strip_suffix("^{}") {
            if let Some(r) = refs.iter_mut().find(|r| r.name == base) {
                r.peeled = Some(id);
            }
            continue;
        }
        refs.push(Ref {
            name: name.to_owned(),
            id,
            peeled: None,
            target: None,
        });
    }
    for (from, to) in symrefs {
        if let Some(r) = refs.iter_mut().find(|r| r.name == from) {
            r.target = Some(to);
        }
    }
    Ok(refs)
}

/// The refs of a v2 `ls-refs` answer.
pub fn ls_refs_answer(body: &[u8]) -> Result<Vec<Ref>, GitError> {
    let mut r = Reader::new(body);
    let mut refs = Vec::new();
    while let Some(p) = r.next_pkt()? {
        let Some(line) = p.line() else { continue };
        let text = std::str::from_utf8(line)
            .map_err(|_| GitError::Protocol("a ref line is not UTF-8".into()))?;
        let mut parts = text.split(' ');
        let (Some(id), Some(name)) = (parts.next(), parts.next()) else {
            continue;
        };
        let id = if id == "unborn" {
            continue;
        } else {
            ObjectId::from_hex(id)?
        };
        let mut rf = Ref {
            name: name.to_owned(),
            id,
            peeled: None,
            target: None,
        };
        for attr in parts {
            if let Some(t) = attr.strip_prefix("symref-target:") {
                rf.target = Some(t.to_owned());
            } else if let Some(p) = attr.strip_prefix("peeled:") {
                rf.peeled = Some(ObjectId::from_hex(p)?);
            }
        }
        refs.push(rf);
    }
    Ok(refs)
}

/// What a `git-upload-pack` request body is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// v2 `ls-refs`: its answer holds refs.
    LsRefs,
    /// A fetch (v0 or v2) of these objects.
    Fetch(Vec<ObjectId>),
}

pub fn request(body: &[u8]) -> Result<Request, GitError> {
    let mut r = Reader::new(body);
    let mut wants = Vec::new();
    while let Some(p) = r.next_pkt()? {
        let Some(line) = p.line() else { continue };
        if line == b"command=ls-refs" {
            return Ok(Request::LsRefs);
        }
        if let Some(w) = line.strip_prefix(b"want ") {
            let hex = w.split(|&b| b == b' ').next().unwrap_or(b"");
            wants.push(ObjectId::from_hex(&String::from_utf8_lossy(hex))?);
        }
    }
    Ok(Request::Fetch(wants))
}

/// The pack in a `git-upload-pack` answer (v0 or v2, side-band or not), or
/// `None` when this answer carries none (a negotiation round).
pub fn pack_of(body: &[u8]) -> Result<Option<Vec<u8>>, GitError> {
    let mut r = Reader::new(body);
    let mut sideband = None;
    loop {
        let rest = r.rest();
        if rest.starts_with(b"PACK") {
            return Ok(Some(rest.to_vec()));
        }
        let Some(p) = r.next_pkt()? else {
            return Ok(None);
        };
        match p {
            Pkt::Data(d)
                if sideband.is_some()
                    || d.first() == Some(&1) && d.len() > 4 && &d[1..5] == b"PACK" =>
            {
                let buf: &mut Vec<u8> = sideband.get_or_insert_with(Vec::new);
                match d.first() {
                    Some(1) => buf.extend_from_slice(&d[1..]),
                    Some(3) => {
                        return Err(GitError::Protocol(format!(
                            "server error: {}",
                            String::from_utf8_lossy(&d[1..])
                        )));
                    }
                    _ => {}
                }
            }
            Pkt::Data(d) if d.starts_with(b"ERR ") => {
                return Err(GitError::Protocol(format!(
                    "server error: {}",
                    String::from_utf8_lossy(&d[4..]).trim_end()
                )));
            }
            Pkt::Flush if sideband.is_some() => break,
            _ => {}
        }
    }
    Ok(sideband)
}

/// The canonical object set of each wanted object, from the pack a fetch
/// received (and `known` objects a thin pack leaves out). A want the pack
/// does not complete is left out: a client that already had part of it
/// fetched only the rest, and it is recorded by the fetch that brought it.
pub fn fetched(
    wants: &[ObjectId],
    pack: &[u8],
    known: &dyn Fn(&ObjectId) -> Option<Object>,
) -> Result<BTreeMap<ObjectId, BTreeMap<ObjectId, Object>>, GitError> {
    let objects: HashMap<ObjectId, Object> = read_pack(pack, known)?
        .into_iter()
        .map(|o| (o.id(), o))
        .collect();
    let lookup = |id: &ObjectId| objects.get(id).cloned().or_else(|| known(id));
    let mut out = BTreeMap::new();
    for w in wants {
        match closure(*w, &lookup) {
            Ok(set) => {
                out.insert(*w, set);
            }
            Err(GitError::Missing(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The body of a v2 `fetch` of `revs` at depth 1: what a fetcher of the
/// canonical form sends (with `Git-Protocol: version=2`).
pub fn fetch_request(revs: &[ObjectId]) -> Vec<u8> {
    use super::pktline::{DELIM, FLUSH, write_line};
    let mut out = Vec::new();
    write_line(&mut out, "command=fetch");
    write_line(&mut out, "object-format=sha1");
    out.extend_from_slice(DELIM);
    for rev in revs {
        write_line(&mut out, &format!("want {rev}"));
    }
    for l in ["deepen 1", "ofs-delta", "no-progress", "done"] {
        write_line(&mut out, l);
    }
    out.extend_from_slice(FLUSH);
    out
}

/// IDs as a message lists them.
pub fn list(ids: &[ObjectId]) -> String {
    let ids: Vec<String> = ids.iter().map(ObjectId::hex).collect();
    ids.join(", ")
}
