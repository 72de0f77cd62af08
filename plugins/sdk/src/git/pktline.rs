//! git's pkt-line framing: every message of the smart protocol is a line
//! prefixed with its length in four hex digits, and three special
//! zero-payload lines separate sections (`0000` flush, `0001` delimiter,
//! `0002` response end). See gitprotocol-common(5).

use super::GitError;

/// The largest pkt-line git sends or accepts, length prefix included.
pub const MAX_PKT: usize = 65520;
/// The largest payload of a side-band-64k data line (one byte is the band).
pub const MAX_SIDEBAND_DATA: usize = MAX_PKT - 4 - 1;

pub const FLUSH: &[u8] = b"0000";
pub const DELIM: &[u8] = b"0001";
pub const RESPONSE_END: &[u8] = b"0002";

/// One pkt-line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pkt<'a> {
    Data(&'a [u8]),
    Flush,
    Delim,
    ResponseEnd,
}

impl<'a> Pkt<'a> {
    /// The payload without its trailing newline, if this is a data line.
    pub fn line(&self) -> Option<&'a [u8]> {
        match self {
            Pkt::Data(d) => Some(d.strip_suffix(b"\n").unwrap_or(d)),
            _ => None,
        }
    }
}

/// Appends `data` as one pkt-line.
pub fn write(out: &mut Vec<u8>, data: &[u8]) {
    debug_assert!(data.len() + 4 <= MAX_PKT);
    out.extend_from_slice(format!("{:04x}", data.len() + 4).as_bytes());
    out.extend_from_slice(data);
}

/// Appends `text` and a newline as one pkt-line.
pub fn write_line(out: &mut Vec<u8>, text: &str) {
    write(out, format!("{text}\n").as_bytes());
}

/// Appends `data` on side-band `band` (1 pack data, 2 progress, 3 error),
/// split into as many lines as side-band-64k needs.
pub fn write_sideband(out: &mut Vec<u8>, band: u8, data: &[u8]) {
    for chunk in data.chunks(MAX_SIDEBAND_DATA) {
        out.extend_from_slice(format!("{:04x}", chunk.len() + 5).as_bytes());
        out.push(band);
        out.extend_from_slice(chunk);
    }
}

/// Reads pkt-lines from a byte buffer.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// The next line, `None` at the end of the buffer.
    pub fn next_pkt(&mut self) -> Result<Option<Pkt<'a>>, GitError> {
        let rest = self.rest();
        if rest.is_empty() {
            return Ok(None);
        }
        let bad = || {
            GitError::Protocol(format!(
                "bad pkt-line length {:?}",
                String::from_utf8_lossy(&rest[..rest.len().min(4)])
            ))
        };
        let len = rest
            .get(..4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| usize::from_str_radix(h, 16).ok())
            .ok_or_else(bad)?;
        let pkt = match len {
            0 => Pkt::Flush,
            1 => Pkt::Delim,
            2 => Pkt::ResponseEnd,
            3 => return Err(bad()),
            n if n > rest.len() || n > MAX_PKT => return Err(bad()),
            n => Pkt::Data(&rest[4..n]),
        };
        self.pos += len.max(4);
        Ok(Some(pkt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_special_lines() {
        let mut out = Vec::new();
        write_line(&mut out, "want abc");
        out.extend_from_slice(DELIM);
        write(&mut out, b"x");
        out.extend_from_slice(FLUSH);
        assert_eq!(&out[..4], b"000d");
        let mut r = Reader::new(&out);
        assert_eq!(
            r.next_pkt().unwrap().unwrap().line(),
            Some(&b"want abc"[..])
        );
        assert_eq!(r.next_pkt().unwrap(), Some(Pkt::Delim));
        assert_eq!(r.next_pkt().unwrap(), Some(Pkt::Data(b"x")));
        assert_eq!(r.next_pkt().unwrap(), Some(Pkt::Flush));
        assert_eq!(r.next_pkt().unwrap(), None);
        assert!(Reader::new(b"zzzz").next_pkt().is_err());
        assert!(Reader::new(b"0010abc").next_pkt().is_err());
    }

    #[test]
    fn sideband_splits_into_64k_lines() {
        let data = vec![7u8; MAX_SIDEBAND_DATA + 10];
        let mut out = Vec::new();
        write_sideband(&mut out, 1, &data);
        let mut r = Reader::new(&out);
        let Some(Pkt::Data(a)) = r.next_pkt().unwrap() else {
            panic!()
        };
        let Some(Pkt::Data(b)) = r.next_pkt().unwrap() else {
            panic!()
        };
        assert_eq!((a.len(), b.len()), (MAX_PKT - 4, 11));
        assert_eq!((a[0], b[0]), (1, 1));
    }
}
