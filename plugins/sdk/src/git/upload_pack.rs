//! The server side of git's fetch over smart HTTP (`git-upload-pack`),
//! answered from recorded refs and objects, for protocol v0/v1 and v2
//! (gitprotocol-v2(5), gitprotocol-http(5)).
//!
//! It is a *shallow* server: it holds the commits a build fetched, not
//! their history, and says so (`shallow` lines), which git accepts even for
//! a full clone. Packs hold whole objects; each object is checked against
//! its ID before it is sent. It never reaches the network: an object it
//! does not hold is a miss naming the repository and the object.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::GitError;
use super::object::{Kind, Object, ObjectId};
use super::objects::closure;
use super::pack::{PackWriter, verify};
use super::pktline::{self, DELIM, FLUSH, Pkt, Reader};

pub const ADVERTISEMENT_TYPE: &str = "application/x-git-upload-pack-advertisement";
pub const RESULT_TYPE: &str = "application/x-git-upload-pack-result";
const AGENT: &str = concat!("agent=buildproxy/", env!("CARGO_PKG_VERSION"));

/// One advertised ref.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ref {
    pub name: String,
    pub id: ObjectId,
    /// For an annotated tag: the commit it points at.
    pub peeled: Option<ObjectId>,
    /// For a symbolic ref (HEAD): the ref it points at.
    pub target: Option<String>,
}

/// A repository as replay holds it: what its server advertised, and the
/// objects the build fetched from it.
#[derive(Debug, Clone, Default)]
pub struct Repository {
    /// The URL the client uses (for messages).
    pub url: String,
    /// HEAD first, then the other refs by name.
    pub refs: Vec<Ref>,
    pub objects: HashMap<ObjectId, Object>,
}

/// The answer to one request.
#[derive(Debug)]
pub struct Answer {
    pub body: Vec<u8>,
    /// Objects the client wanted that were never captured.
    pub missing: Vec<ObjectId>,
}

impl Repository {
    fn get(&self, id: &ObjectId) -> Option<Object> {
        self.objects.get(id).cloned()
    }

    /// The commits where the served history is cut.
    fn shallow(&self) -> Vec<ObjectId> {
        let mut out: Vec<_> = self
            .objects
            .iter()
            .filter(|(_, o)| o.kind == Kind::Commit)
            .filter(|(_, o)| {
                o.commit_parents()
                    .map(|ps| ps.iter().any(|p| !self.objects.contains_key(p)))
                    .unwrap_or(true)
            })
            .map(|(id, _)| *id)
            .collect();
        out.sort();
        out
    }

    /// `GET info/refs?service=git-upload-pack`: the v0 ref advertisement,
    /// or, when the client asked for protocol v2 (`Git-Protocol:
    /// version=2`), the v2 capability advertisement.
    pub fn advertise(&self, v2: bool) -> Vec<u8> {
        let mut out = Vec::new();
        if v2 {
            for line in [
                "version 2",
                AGENT,
                "ls-refs=unborn",
                "fetch=shallow",
                "object-format=sha1",
            ] {
                pktline::write_line(&mut out, line);
            }
            out.extend_from_slice(FLUSH);
            return out;
        }
        pktline::write_line(&mut out, "# service=git-upload-pack");
        out.extend_from_slice(FLUSH);
        let symref = self
            .refs
            .iter()
            .find_map(|r| Some(format!(" symref={}:{}", r.name, r.target.as_ref()?)))
            .unwrap_or_default();
        let caps = format!(
            "multi_ack_detailed side-band-64k thin-pack ofs-delta shallow no-progress include-tag \
             allow-tip-sha1-in-want allow-reachable-sha1-in-want{symref} object-format=sha1 {AGENT}"
        );
        let mut first = true;
        for r in &self.refs {
            let line = if first {
                first = false;
                format!("{} {}\0{caps}\n", r.id, r.name)
            } else {
                format!("{} {}\n", r.id, r.name)
            };
            pktline::write(&mut out, line.as_bytes());
            if let Some(p) = r.peeled {
                pktline::write_line(&mut out, &format!("{p} {}^{{}}", r.name));
            }
        }
        if first {
            let zero = ObjectId([0; 20]);
            pktline::write(
                &mut out,
                format!("{zero} capabilities^{{}}\0{caps}\n").as_bytes(),
            );
        }
        for id in self.shallow() {
            pktline::write_line(&mut out, &format!("shallow {id}"));
        }
        out.extend_from_slice(FLUSH);
        out
    }

    /// `POST git-upload-pack`: the request body in, the response body out.
    pub fn upload_pack(&self, body: &[u8]) -> Result<Answer, GitError> {
        let mut r = Reader::new(body);
        let first = match r.next_pkt()? {
            Some(p) => p,
            None => return Err(GitError::Protocol("empty git-upload-pack request".into())),
        };
        match first.line().and_then(|l| l.strip_prefix(b"command=")) {
            Some(b"ls-refs") => Ok(self.ls_refs(&mut r)?),
            Some(b"fetch") => self.fetch_v2(&mut r),
            Some(other) => Err(GitError::Protocol(format!(
                "unknown command {:?}",
                String::from_utf8_lossy(other)
            ))),
            None => self.fetch_v0(first, &mut r),
        }
    }

    fn ls_refs(&self, r: &mut Reader) -> Result<Answer, GitError> {
        let args = section(r)?.1;
        let prefixes: Vec<&str> = args
            .iter()
            .filter_map(|a| a.strip_prefix("ref-prefix "))
            .collect();
        let (peel, symrefs) = (
            args.iter().any(|a| a == "peel"),
            args.iter().any(|a| a == "symrefs"),
        );
        let mut out = Vec::new();
        for rf in &self.refs {
            if !prefixes.is_empty() && !prefixes.iter().any(|p| rf.name.starts_with(p)) {
                continue;
            }
            let mut line = format!("{} {}", rf.id, rf.name);
            if let (true, Some(t)) = (symrefs, &rf.target) {
                line.push_str(&format!(" symref-target:{t}"));
            }
            if let (true, Some(p)) = (peel, rf.peeled) {
                line.push_str(&format!(" peeled:{p}"));
            }
            pktline::write_line(&mut out, &line);
        }
        out.extend_from_slice(FLUSH);
        Ok(Answer {
            body: out,
            missing: Vec::new(),
        })
    }

    fn fetch_v2(&self, r: &mut Reader) -> Result<Answer, GitError> {
        let (_, args) = section(r)?;
        let req = Request::parse(args.iter().map(String::as_str));
        let mut out = Vec::new();
        let missing = self.missing(&req.wants);
        if !missing.is_empty() {
            return Ok(self.refuse(missing));
        }
        if !req.done {
            // Whatever the client has, the pack is ready: it holds every
            // want whole.
            pktline::write_line(&mut out, "acknowledgments");
            let common: Vec<_> = req
                .haves
                .iter()
                .filter(|h| self.objects.contains_key(h))
                .collect();
            if common.is_empty() {
                pktline::write_line(&mut out, "NAK");
            }
            for id in common {
                pktline::write_line(&mut out, &format!("ACK {id}"));
            }
            pktline::write_line(&mut out, "ready");
            out.extend_from_slice(DELIM);
        }
        let (objects, shallow) = self.pack_objects(&req)?;
        pktline::write_line(&mut out, "shallow-info");
        for id in &shallow {
            pktline::write_line(&mut out, &format!("shallow {id}"));
        }
        out.extend_from_slice(DELIM);
        pktline::write_line(&mut out, "packfile");
        self.write_pack(&mut out, &objects, true)?;
        out.extend_from_slice(FLUSH);
        Ok(Answer {
            body: out,
            missing: Vec::new(),
        })
    }

    fn fetch_v0(&self, first: Pkt, r: &mut Reader) -> Result<Answer, GitError> {
        let mut lines = vec![text(first)?];
        loop {
            match r.next_pkt()? {
                Some(Pkt::Flush) | None => break,
                Some(p) => lines.push(text(p)?),
            }
        }
        let caps: BTreeSet<String> = lines
            .first()
            .and_then(|l| l.strip_prefix("want "))
            .map(|l| l.split(' ').skip(1).map(str::to_owned).collect())
            .unwrap_or_default();
        let mut req = Request::parse(lines.iter().map(String::as_str));
        let missing = self.missing(&req.wants);
        if !missing.is_empty() {
            return Ok(self.refuse(missing));
        }
        req.include_tag |= caps.contains("include-tag");
        let mut out = Vec::new();
        let (objects, shallow) = self.pack_objects(&req)?;
        if req.deepen {
            for id in &shallow {
                pktline::write_line(&mut out, &format!("shallow {id}"));
            }
            out.extend_from_slice(FLUSH);
        }
        // The negotiation, one round per request (stateless HTTP): haves
        // until a flush or `done`. Haves it holds are acknowledged as
        // common and the round ends "ready", so a client with history
        // stops offering more at once; the pack is sent after `done`.
        let mut done = false;
        let mut round = false;
        let mut common = None;
        while let Some(p) = r.next_pkt()? {
            match p {
                Pkt::Flush => {
                    round = true;
                    break;
                }
                p if p.line() == Some(b"done") => {
                    done = true;
                    break;
                }
                p => {
                    if let Some(id) = self.held_have(p) {
                        pktline::write_line(&mut out, &format!("ACK {id} common"));
                        common = Some(id);
                    }
                }
            }
        }
        if !done {
            if round {
                if let Some(id) = common {
                    pktline::write_line(&mut out, &format!("ACK {id} ready"));
                }
                pktline::write_line(&mut out, "NAK");
            }
            return Ok(Answer {
                body: out,
                missing: Vec::new(),
            });
        }
        pktline::write_line(&mut out, "NAK");
        let sideband = caps.contains("side-band-64k") || caps.contains("side-band");
        self.write_pack(&mut out, &objects, sideband)?;
        if sideband {
            out.extend_from_slice(FLUSH);
        }
        Ok(Answer {
            body: out,
            missing: Vec::new(),
        })
    }

    /// The object of a `have` line, if it is one this server holds.
    fn held_have(&self, p: Pkt) -> Option<ObjectId> {
        let line = p.line()?.strip_prefix(b"have ")?;
        let id = ObjectId::from_hex(std::str::from_utf8(line).ok()?.trim()).ok()?;
        self.objects.contains_key(&id).then_some(id)
    }

    fn missing(&self, wants: &[ObjectId]) -> Vec<ObjectId> {
        wants
            .iter()
            .filter(|w| !self.objects.contains_key(w))
            .copied()
            .collect()
    }

    /// An `ERR` line git prints as "remote error: …".
    fn refuse(&self, missing: Vec<ObjectId>) -> Answer {
        let ids: Vec<String> = missing.iter().map(ObjectId::hex).collect();
        let mut body = Vec::new();
        pktline::write_line(
            &mut body,
            &format!(
                "ERR buildproxy: {} at {} was not captured; capture the build again to record it",
                self.url,
                ids.join(", ")
            ),
        );
        Answer { body, missing }
    }

    /// The objects to send (each want at depth 1, plus annotated tags of
    /// what is sent when asked), and the commits the client must mark
    /// shallow.
    fn pack_objects(
        &self,
        req: &Request,
    ) -> Result<(BTreeMap<ObjectId, Object>, Vec<ObjectId>), GitError> {
        let mut objects = BTreeMap::new();
        let lookup = |id: &ObjectId| self.get(id);
        for w in &req.wants {
            objects.extend(closure(*w, &lookup).map_err(|e| self.missing_object(e))?);
        }
        if req.include_tag {
            for rf in &self.refs {
                if let (Some(p), Some(tag)) = (rf.peeled, self.objects.get(&rf.id))
                    && objects.contains_key(&p)
                    && tag.kind == Kind::Tag
                {
                    objects.insert(rf.id, tag.clone());
                }
            }
        }
        let shallow = objects
            .iter()
            .filter(|(_, o)| o.kind == Kind::Commit)
            .filter(|(_, o)| {
                o.commit_parents()
                    .map(|ps| ps.iter().any(|p| !objects.contains_key(p)))
                    .unwrap_or(true)
            })
            .map(|(id, _)| *id)
            .collect();
        Ok((objects, shallow))
    }

    fn missing_object(&self, e: GitError) -> GitError {
        match e {
            GitError::Missing(id) => GitError::Corrupt(format!(
                "{}: object {id} is needed but was not recorded: capture the build again",
                self.url
            )),
            e => e,
        }
    }

    /// The pack of `objects`, each checked against its ID, on side-band 1
    /// when `sideband`.
    fn write_pack(
        &self,
        out: &mut Vec<u8>,
        objects: &BTreeMap<ObjectId, Object>,
        sideband: bool,
    ) -> Result<(), GitError> {
        let mut emit = |bytes: &[u8]| {
            if sideband {
                pktline::write_sideband(out, 1, bytes)
            } else {
                out.extend_from_slice(bytes)
            }
        };
        let (mut w, header) = PackWriter::new(objects.len() as u32);
        emit(&header);
        for (id, o) in objects {
            verify(id, o)?;
            emit(&w.object(o));
        }
        emit(&w.finish());
        Ok(())
    }
}

/// The lines of one request section up to a delimiter or flush: (the
/// capability lines before a delimiter, the argument lines after it).
fn section(r: &mut Reader) -> Result<(Vec<String>, Vec<String>), GitError> {
    let (mut caps, mut args, mut in_args) = (Vec::new(), Vec::new(), false);
    while let Some(p) = r.next_pkt()? {
        match p {
            Pkt::Delim => in_args = true,
            Pkt::Flush | Pkt::ResponseEnd => break,
            p => {
                let t = text(p)?;
                if in_args { args.push(t) } else { caps.push(t) }
            }
        }
    }
    Ok((caps, args))
}

fn text(p: Pkt) -> Result<String, GitError> {
    let line = p
        .line()
        .ok_or_else(|| GitError::Protocol("expected a data line".into()))?;
    String::from_utf8(line.to_vec())
        .map_err(|_| GitError::Protocol("a request line is not UTF-8".into()))
}

/// What a fetch asks for.
#[derive(Debug, Default)]
struct Request {
    wants: Vec<ObjectId>,
    haves: Vec<ObjectId>,
    deepen: bool,
    done: bool,
    include_tag: bool,
}

impl Request {
    fn parse<'a>(lines: impl Iterator<Item = &'a str>) -> Request {
        let mut req = Request::default();
        for l in lines {
            if let Some(w) = l.strip_prefix("want ") {
                if let Ok(id) = ObjectId::from_hex(w.split(' ').next().unwrap_or("")) {
                    req.wants.push(id);
                }
            } else if let Some(h) = l.strip_prefix("have ") {
                if let Ok(id) = ObjectId::from_hex(h.trim()) {
                    req.haves.push(id);
                }
            } else if l.starts_with("deepen") {
                req.deepen = true;
            } else if l == "done" {
                req.done = true;
            } else if l == "include-tag" {
                req.include_tag = true;
            }
        }
        req
    }
}
