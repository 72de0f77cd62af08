//! Small helpers for the `headers` lists plugins receive.

use crate::Headers;

/// The first value of a header (names are lower-case in every list the host
/// gives), as text if it is UTF-8.
pub fn get<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

/// Removes every value of a header.
pub fn remove(headers: &mut Headers, name: &str) {
    headers.retain(|(n, _)| n != name);
}

/// Replaces every value of a header with one.
pub fn set(headers: &mut Headers, name: &str, value: &str) {
    remove(headers, name);
    headers.push((name.to_string(), value.as_bytes().to_vec()));
}
