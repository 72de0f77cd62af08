//! Packfiles: writing the undeltified packs replay serves, and reading the
//! packs an upstream sends (deltas included), per gitformat-pack(5).
//!
//! Replay's packs hold every object whole (no deltas): a delta would save
//! bytes on the loopback link only, and choosing bases is where servers
//! differ. The stream is made object by object, so a large repository is
//! never held compressed in memory at once.

use std::collections::HashMap;
use std::io::Write;

use flate2::Compression;
use flate2::write::ZlibEncoder;
use sha1::{Digest, Sha1};

use super::GitError;
use super::object::{Kind, Object, ObjectId, id_of};

const OFS_DELTA: u8 = 6;
const REF_DELTA: u8 = 7;

/// Writes a pack one object at a time; every call returns the bytes to
/// send next.
pub struct PackWriter {
    hash: Sha1,
    left: u32,
}

impl PackWriter {
    /// Starts a pack of `count` objects; returns the writer and the header.
    pub fn new(count: u32) -> (Self, Vec<u8>) {
        let mut header = Vec::with_capacity(12);
        header.extend_from_slice(b"PACK");
        header.extend_from_slice(&2u32.to_be_bytes());
        header.extend_from_slice(&count.to_be_bytes());
        let mut hash = Sha1::new();
        hash.update(&header);
        (PackWriter { hash, left: count }, header)
    }

    /// One object's entry: its type and size, then its zlib-deflated content.
    pub fn object(&mut self, obj: &Object) -> Vec<u8> {
        assert!(self.left > 0, "more objects than announced");
        self.left -= 1;
        let mut out = Vec::with_capacity(obj.data.len() / 2 + 16);
        let mut size = obj.data.len() as u64;
        let mut byte = ((obj.kind as u8) << 4) | (size & 0x0f) as u8;
        size >>= 4;
        while size > 0 {
            out.push(byte | 0x80);
            byte = (size & 0x7f) as u8;
            size >>= 7;
        }
        out.push(byte);
        let mut z = ZlibEncoder::new(out, Compression::fast());
        z.write_all(&obj.data)
            .expect("writing to a Vec cannot fail");
        let out = z.finish().expect("writing to a Vec cannot fail");
        self.hash.update(&out);
        out
    }

    /// The trailer: the SHA-1 of everything before it.
    pub fn finish(self) -> Vec<u8> {
        assert_eq!(self.left, 0, "fewer objects than announced");
        self.hash.finalize().to_vec()
    }
}

/// A whole pack of `objects`, in the order given.
pub fn write_pack<'a>(objects: impl ExactSizeIterator<Item = &'a Object>) -> Vec<u8> {
    let (mut w, mut out) = PackWriter::new(objects.len() as u32);
    for o in objects {
        out.extend(w.object(o));
    }
    out.extend(w.finish());
    out
}

/// Reads every object of a pack, resolving deltas. A thin pack's missing
/// bases are asked of `external`.
pub fn read_pack(
    pack: &[u8],
    external: &dyn Fn(&ObjectId) -> Option<Object>,
) -> Result<Vec<Object>, GitError> {
    let corrupt = |why: String| GitError::Corrupt(format!("pack: {why}"));
    if pack.len() < 32 || &pack[..4] != b"PACK" {
        return Err(corrupt("no PACK header".into()));
    }
    let version = u32::from_be_bytes(pack[4..8].try_into().unwrap());
    if version != 2 && version != 3 {
        return Err(corrupt(format!("version {version}")));
    }
    let count = u32::from_be_bytes(pack[8..12].try_into().unwrap()) as usize;
    let body_end = pack.len() - 20;
    if Sha1::digest(&pack[..body_end])[..] != pack[body_end..] {
        return Err(corrupt("trailer checksum does not match".into()));
    }
    enum Raw {
        Whole(Kind, Vec<u8>),
        Ofs(usize, Vec<u8>),
        Ref(ObjectId, Vec<u8>),
    }
    let mut raws = Vec::with_capacity(count);
    let mut offsets = HashMap::with_capacity(count);
    let mut pos = 12;
    for _ in 0..count {
        let start = pos;
        let mut c = *pack.get(pos).ok_or_else(|| corrupt("truncated".into()))?;
        pos += 1;
        let t = (c >> 4) & 7;
        let mut size = (c & 0x0f) as u64;
        let mut shift = 4;
        while c & 0x80 != 0 {
            c = *pack.get(pos).ok_or_else(|| corrupt("truncated".into()))?;
            pos += 1;
            size |= ((c & 0x7f) as u64) << shift;
            shift += 7;
        }
        let raw = match t {
            OFS_DELTA => {
                let mut c = pack[pos];
                pos += 1;
                let mut ofs = (c & 0x7f) as usize;
                while c & 0x80 != 0 {
                    c = pack[pos];
                    pos += 1;
                    ofs = ((ofs + 1) << 7) | (c & 0x7f) as usize;
                }
                let base = start
                    .checked_sub(ofs)
                    .ok_or_else(|| corrupt(format!("delta at {start} points before the pack")))?;
                let (data, used) = inflate(&pack[pos..body_end], size as usize)?;
                pos += used;
                Raw::Ofs(base, data)
            }
            REF_DELTA => {
                let mut id = [0u8; 20];
                id.copy_from_slice(
                    pack.get(pos..pos + 20)
                        .ok_or_else(|| corrupt("truncated".into()))?,
                );
                pos += 20;
                let (data, used) = inflate(&pack[pos..body_end], size as usize)?;
                pos += used;
                Raw::Ref(ObjectId(id), data)
            }
            t => {
                let kind =
                    Kind::from_pack_type(t).ok_or_else(|| corrupt(format!("object type {t}")))?;
                let (data, used) = inflate(&pack[pos..body_end], size as usize)?;
                pos += used;
                Raw::Whole(kind, data)
            }
        };
        offsets.insert(start, raws.len());
        raws.push(raw);
    }
    // Resolve deltas until nothing changes: a base may come later in the
    // pack (REF_DELTA) or be another delta.
    let mut done: Vec<Option<Object>> = raws
        .iter()
        .map(|r| match r {
            Raw::Whole(k, d) => Some(Object::new(*k, d.clone())),
            _ => None,
        })
        .collect();
    let mut by_id: HashMap<ObjectId, usize> = done
        .iter()
        .enumerate()
        .filter_map(|(i, o)| Some((o.as_ref()?.id(), i)))
        .collect();
    loop {
        let mut progressed = false;
        for i in 0..raws.len() {
            if done[i].is_some() {
                continue;
            }
            let (base, delta) = match &raws[i] {
                Raw::Ofs(at, d) => {
                    let j = *offsets
                        .get(at)
                        .ok_or_else(|| corrupt(format!("no object at offset {at}")))?;
                    (done[j].clone(), d)
                }
                Raw::Ref(id, d) => (
                    by_id
                        .get(id)
                        .and_then(|&j| done[j].clone())
                        .or_else(|| external(id)),
                    d,
                ),
                Raw::Whole(..) => unreachable!(),
            };
            if let Some(base) = base {
                let obj = Object::new(base.kind, apply_delta(&base.data, delta)?);
                by_id.insert(obj.id(), i);
                done[i] = Some(obj);
                progressed = true;
            }
        }
        if !progressed {
            break;
        }
    }
    done.into_iter()
        .enumerate()
        .map(|(i, o)| o.ok_or_else(|| corrupt(format!("delta {i} has no base in the pack"))))
        .collect()
}

/// Inflates one zlib stream of `size` bytes; returns it and how many
/// compressed bytes it took.
fn inflate(input: &[u8], size: usize) -> Result<(Vec<u8>, usize), GitError> {
    let mut z = flate2::Decompress::new(true);
    let mut out = Vec::with_capacity(size);
    loop {
        let before = (z.total_in(), z.total_out());
        let status = z
            .decompress_vec(
                &input[z.total_in() as usize..],
                &mut out,
                flate2::FlushDecompress::None,
            )
            .map_err(|e| GitError::Corrupt(format!("pack: zlib: {e}")))?;
        if status == flate2::Status::StreamEnd {
            break;
        }
        if out.len() == out.capacity() {
            out.reserve(64);
        } else if (z.total_in(), z.total_out()) == before {
            return Err(GitError::Corrupt("pack: truncated zlib stream".into()));
        }
    }
    if out.len() != size {
        return Err(GitError::Corrupt(format!(
            "pack: object of {} bytes, header says {size}",
            out.len()
        )));
    }
    Ok((out, z.total_in() as usize))
}

/// Applies a git delta to `base`.
fn apply_delta(base: &[u8], delta: &[u8]) -> Result<Vec<u8>, GitError> {
    let bad = || GitError::Corrupt("pack: malformed delta".into());
    let mut pos = 0;
    let mut varint = || -> Result<usize, GitError> {
        let mut v = 0usize;
        let mut shift = 0;
        loop {
            let c = *delta.get(pos).ok_or_else(bad)?;
            pos += 1;
            v |= ((c & 0x7f) as usize) << shift;
            shift += 7;
            if c & 0x80 == 0 {
                return Ok(v);
            }
        }
    };
    let src = varint()?;
    let dst = varint()?;
    if src != base.len() {
        return Err(bad());
    }
    let mut out = Vec::with_capacity(dst);
    while pos < delta.len() {
        let op = delta[pos];
        pos += 1;
        if op & 0x80 != 0 {
            let mut take = |bit: u8, shift: u32, v: &mut usize| -> Result<(), GitError> {
                if op & bit != 0 {
                    *v |= (*delta.get(pos).ok_or_else(bad)? as usize) << shift;
                    pos += 1;
                }
                Ok(())
            };
            let (mut off, mut len) = (0usize, 0usize);
            for (i, bit) in [0x01u8, 0x02, 0x04, 0x08].into_iter().enumerate() {
                take(bit, 8 * i as u32, &mut off)?;
            }
            for (i, bit) in [0x10u8, 0x20, 0x40].into_iter().enumerate() {
                take(bit, 8 * i as u32, &mut len)?;
            }
            if len == 0 {
                len = 0x10000;
            }
            out.extend_from_slice(base.get(off..off + len).ok_or_else(bad)?);
        } else if op != 0 {
            let n = op as usize;
            out.extend_from_slice(delta.get(pos..pos + n).ok_or_else(bad)?);
            pos += n;
        } else {
            return Err(bad());
        }
    }
    if out.len() != dst {
        return Err(bad());
    }
    Ok(out)
}

/// Checks that an object has the ID it was served under.
pub fn verify(id: &ObjectId, obj: &Object) -> Result<(), GitError> {
    let got = id_of(obj.kind, &obj.data);
    if got == *id {
        Ok(())
    } else {
        Err(GitError::Corrupt(format!(
            "object {id} hashes to {got}: the stored git objects were changed"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_pack_reads_back() {
        let objs = vec![
            Object::new(Kind::Blob, b"hello\n".to_vec()),
            Object::new(Kind::Blob, vec![42; 100_000]),
            Object::new(Kind::Tree, Vec::new()),
        ];
        let pack = write_pack(objs.iter());
        assert_eq!(read_pack(&pack, &|_| None).unwrap(), objs);
        let mut bad = pack.clone();
        bad[20] ^= 1;
        assert!(read_pack(&bad, &|_| None).is_err());
    }

    #[test]
    fn deltas_apply() {
        let base = b"0123456789abcdef".to_vec();
        // src 16, dst 9: copy 4 bytes from offset 2, insert "xyz", copy 2 from 0.
        let delta = [
            16,
            9,
            0x80 | 0x01 | 0x10,
            2,
            4,
            3,
            b'x',
            b'y',
            b'z',
            0x80 | 0x10,
            2,
        ];
        assert_eq!(apply_delta(&base, &delta).unwrap(), b"2345xyz01");
        assert!(apply_delta(&base, &[15, 1, 1, b'a']).is_err());
    }
}
