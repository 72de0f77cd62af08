//! One entry of a prepared file, as bytes: every field in a fixed order,
//! integers little-endian, strings as a `u32` length and UTF-8.
//!
//! A lookup reads and decodes one record per candidate, so decoding is on
//! every replayed request's path: a JSON record cost about 8,000
//! instructions to parse, this one a few hundred, and its method and URL
//! are compared in place before anything is allocated. The prepared file
//! is made by the buildproxy that reads it (or prepared again when the
//! version differs), so a new field is a new file version, not an optional
//! key.
//!
//! ```text
//! index u64, status u16, method str, url str,
//! present u8   bit 0 fetch_url, 1 name, 2 file, 3 size, 4 hash; each that is set follows:
//! fetch_url str, name str, file str, size u64, hash str,
//! headers u32 n, n × (name str, value str),
//! request_headers u32 n, n × (name str, value str)
//! ```

use std::collections::BTreeMap;

/// One entry as stored in a prepared file.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Record {
    /// Position in the content it was prepared from, for messages.
    pub index: usize,
    pub method: String,
    /// Normalised (see [`super::normalize_url`]).
    pub url: String,
    pub fetch_url: Option<String>,
    pub name: Option<String>,
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    /// The request headers that selected this representation.
    pub request_headers: BTreeMap<String, String>,
    /// Absolute, or relative to the directory given to `Prepared::open`.
    pub file: Option<String>,
    pub size: Option<u64>,
    pub hash: Option<String>,
}

/// Where the method's length starts: after `index` (u64) and `status` (u16).
pub(super) const KEY_AT: usize = 10;

const FETCH_URL: u8 = 1;
const NAME: u8 = 2;
const FILE: u8 = 4;
const SIZE: u8 = 8;
const HASH: u8 = 16;

/// Appends `r`'s bytes to `out`.
pub(super) fn encode(r: &Record, out: &mut Vec<u8>) {
    out.extend_from_slice(&(r.index as u64).to_le_bytes());
    out.extend_from_slice(&r.status.to_le_bytes());
    put_str(out, &r.method);
    put_str(out, &r.url);
    let present = [
        (r.fetch_url.is_some(), FETCH_URL),
        (r.name.is_some(), NAME),
        (r.file.is_some(), FILE),
        (r.size.is_some(), SIZE),
        (r.hash.is_some(), HASH),
    ]
    .iter()
    .filter(|(set, _)| *set)
    .fold(0, |bits, (_, bit)| bits | bit);
    out.push(present);
    for s in [&r.fetch_url, &r.name, &r.file].into_iter().flatten() {
        put_str(out, s);
    }
    if let Some(size) = r.size {
        out.extend_from_slice(&size.to_le_bytes());
    }
    if let Some(hash) = &r.hash {
        put_str(out, hash);
    }
    for map in [&r.headers, &r.request_headers] {
        out.extend_from_slice(&(map.len() as u32).to_le_bytes());
        for (n, v) in map {
            put_str(out, n);
            put_str(out, v);
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The record's method and URL, read in place as bytes: what a lookup
/// compares before it decodes the rest. Not checked as UTF-8 here: bytes
/// equal to a `&str` are UTF-8, and a record that matches is decoded, which
/// checks every string.
pub(super) fn key(bytes: &[u8]) -> Result<(&[u8], &[u8]), String> {
    let mut r = Reader { bytes, at: KEY_AT };
    Ok((r.raw_str("method")?, r.raw_str("url")?))
}

/// Decodes a whole record; the message says which field is damaged.
pub(super) fn decode(bytes: &[u8]) -> Result<Record, String> {
    let mut r = Reader { bytes, at: 0 };
    let index = r.u64("index")?;
    let status = u16::from_le_bytes(r.array("status")?);
    let method = r.str("method")?.to_owned();
    let url = r.str("url")?.to_owned();
    let [present] = r.array("field flags")?;
    if present & !(FETCH_URL | NAME | FILE | SIZE | HASH) != 0 {
        return Err(format!("unknown field flags {present:#04x}"));
    }
    let mut opt = |bit: u8, field: &str| -> Result<Option<String>, String> {
        Ok(if present & bit != 0 {
            Some(r.str(field)?.to_owned())
        } else {
            None
        })
    };
    let fetch_url = opt(FETCH_URL, "fetch_url")?;
    let name = opt(NAME, "name")?;
    let file = opt(FILE, "file")?;
    let size = if present & SIZE != 0 {
        Some(r.u64("size")?)
    } else {
        None
    };
    let hash = if present & HASH != 0 {
        Some(r.str("hash")?.to_owned())
    } else {
        None
    };
    let headers = r.map("headers")?;
    let request_headers = r.map("request_headers")?;
    if r.at != bytes.len() {
        return Err(format!(
            "{} bytes follow its last field",
            bytes.len() - r.at
        ));
    }
    Ok(Record {
        index: usize::try_from(index).map_err(|_| format!("index {index} is too large"))?,
        method,
        url,
        fetch_url,
        name,
        status,
        headers,
        request_headers,
        file,
        size,
        hash,
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| format!("it ends inside its {field}"))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], String> {
        Ok(self.take(N, field)?.try_into().unwrap())
    }

    fn u64(&mut self, field: &str) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    fn str(&mut self, field: &str) -> Result<&'a str, String> {
        std::str::from_utf8(self.raw_str(field)?).map_err(|_| format!("its {field} is not UTF-8"))
    }

    fn raw_str(&mut self, field: &str) -> Result<&'a [u8], String> {
        let len = u32::from_le_bytes(self.array(field)?) as usize;
        self.take(len, field)
    }

    /// Inserted one by one: `collect` would gather the pairs in a vector
    /// and sort them first, an allocation and a sort per lookup for the
    /// two or three headers a record holds (they were written sorted).
    fn map(&mut self, field: &str) -> Result<BTreeMap<String, String>, String> {
        let n = u32::from_le_bytes(self.array(field)?);
        let mut map = BTreeMap::new();
        for _ in 0..n {
            let name = self.str(field)?.to_owned();
            map.insert(name, self.str(field)?.to_owned());
        }
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn full() -> Record {
        Record {
            index: 7,
            method: "GET".into(),
            url: "https://e.org/a?b=c".into(),
            fetch_url: Some("https://mirror.e.org/a".into()),
            name: Some("a.tar.gz".into()),
            status: 200,
            headers: [("content-type".into(), "text/plain".into())].into(),
            request_headers: [("accept".into(), "application/json".into())].into(),
            file: Some("/nix/store/x-a".into()),
            size: Some(5),
            hash: Some("sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=".into()),
        }
    }

    #[test]
    fn every_field_round_trips_and_the_key_is_read_in_place() {
        for r in [full(), Record::default()] {
            let mut bytes = Vec::new();
            encode(&r, &mut bytes);
            assert_eq!(
                key(&bytes).unwrap(),
                (r.method.as_bytes(), r.url.as_bytes())
            );
            assert_eq!(decode(&bytes).unwrap(), r);
        }
    }

    #[test]
    fn damage_is_refused_naming_the_field() {
        let mut bytes = Vec::new();
        encode(&full(), &mut bytes);
        let err = decode(&bytes[..bytes.len() - 1]).unwrap_err();
        assert!(err.contains("ends inside its request_headers"), "{err}");
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).unwrap_err().contains("1 bytes follow"));
        let mut bad_utf8 = bytes.clone();
        bad_utf8[KEY_AT + 4] = 0xff; // the method's first byte
        assert!(
            decode(&bad_utf8)
                .unwrap_err()
                .contains("method is not UTF-8")
        );
        assert!(
            key(&bytes[..12])
                .unwrap_err()
                .contains("ends inside its method")
        );
    }

    proptest! {
        #[test]
        fn any_record_round_trips(
            index in 0usize..1 << 40,
            status in any::<u16>(),
            method in "[A-Z]{0,8}",
            url in "\\PC{0,40}",
            fetch_url in proptest::option::of("\\PC{0,20}"),
            name in proptest::option::of("\\PC{0,20}"),
            file in proptest::option::of("\\PC{0,20}"),
            size in proptest::option::of(any::<u64>()),
            hash in proptest::option::of("\\PC{0,20}"),
            headers in proptest::collection::btree_map("\\PC{0,8}", "\\PC{0,8}", 0..4),
            request_headers in proptest::collection::btree_map("\\PC{0,8}", "\\PC{0,8}", 0..4),
        ) {
            let r = Record { index, method, url, fetch_url, name, status, headers,
                             request_headers, file, size, hash };
            let mut bytes = Vec::new();
            encode(&r, &mut bytes);
            prop_assert_eq!(decode(&bytes).unwrap(), r);
        }
    }
}
