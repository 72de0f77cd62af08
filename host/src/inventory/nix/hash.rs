//! sha256 hashes in the spellings Nix files use.
//!
//! Entries keep one spelling, SRI (`sha256-<base64>`), so that equal hashes
//! compare equal as strings. Older files write `sha256 = "…"` in hex or in
//! Nix's own base32, which is converted here.

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};

/// A sha256 digest.
pub type Digest = [u8; 32];

/// Nix's base32 alphabet: digits and letters without `e`, `o`, `t`, `u`.
const NIX32: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// Length of a sha256 digest in Nix base32.
const NIX32_LEN: usize = 52;

/// Base64 that accepts SRI hashes with or without `=` padding (Nix does).
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Converts any sha256 spelling Nix accepts to canonical SRI.
///
/// Accepts `sha256-<base64>`, `sha256:<hex|nix32|base64>` and a bare hex,
/// Nix base32 or base64 digest. The error says what was wrong, for use in a
/// message that names the entry.
pub fn to_sri(text: &str) -> Result<String, String> {
    digest_of(text).map(|d| sri(&d))
}

/// The canonical SRI spelling of `digest`.
pub fn sri(digest: &[u8]) -> String {
    format!("sha256-{}", STANDARD.encode(digest))
}

/// The lower-case hex spelling of an SRI (or any accepted) sha256 hash.
pub fn to_hex(text: &str) -> Result<String, String> {
    digest_of(text).map(|d| hex(&d))
}

/// The lower-case hex spelling of `digest`, as blob file names use it.
pub fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses any accepted sha256 spelling to its digest.
pub fn digest_of(text: &str) -> Result<Digest, String> {
    let bare = if let Some(b64) = text.strip_prefix("sha256-") {
        return decode_base64(b64).ok_or_else(|| bad(text));
    } else if let Some(rest) = text.strip_prefix("sha256:") {
        rest
    } else {
        text
    };
    if let Some((algo, _)) = bare.split_once(['-', ':']) {
        return Err(format!(
            "`{text}` is a {algo} hash, but only sha256 is supported"
        ));
    }
    let digest = match bare.len() {
        64 => decode_hex(bare),
        NIX32_LEN => nix32_decode(bare),
        44 | 43 => decode_base64(bare),
        _ => None,
    };
    digest.ok_or_else(|| bad(text))
}

fn bad(text: &str) -> String {
    format!(
        "`{text}` is not a sha256 hash (expected SRI `sha256-<base64>`, \
         64 hex digits or 52 Nix base32 characters)"
    )
}

fn decode_base64(s: &str) -> Option<Digest> {
    LENIENT.decode(s).ok()?.try_into().ok()
}

fn decode_hex(s: &str) -> Option<Digest> {
    let mut out = [0u8; 32];
    for (i, pair) in s.as_bytes().chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        *out.get_mut(i)? = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// Decodes Nix base32 (libutil's `Hash::parseAnyPrefixed` for base32).
///
/// Nix writes the digest's bits least significant first, and the string's
/// *last* character holds bits 0..5: character `n` from the end carries bits
/// `5n .. 5n+5`, which may straddle two bytes.
pub fn nix32_decode(s: &str) -> Option<Digest> {
    if s.len() != NIX32_LEN {
        return None;
    }
    let mut out = [0u8; 32];
    for (n, c) in s.bytes().rev().enumerate() {
        let digit = NIX32.iter().position(|&a| a == c)? as u16;
        let (i, j) = (n * 5 / 8, n * 5 % 8);
        out[i] |= (digit << j) as u8;
        let carry = digit >> (8 - j);
        match out.get_mut(i + 1) {
            Some(next) => *next |= carry as u8,
            // Bits past the digest's end must be zero, or the text is not
            // the spelling of any digest.
            None if carry != 0 => return None,
            None => {}
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // sha256("abc"), from Nix's own hash tests.
    const ABC_HEX: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    const ABC_NIX32: &str = "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s";
    const ABC_SRI: &str = "sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=";
    // sha256(""), the hash of an empty download.
    const EMPTY_NIX32: &str = "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73";
    const EMPTY_SRI: &str = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";

    #[test]
    fn nix32_test_vectors() {
        assert_eq!(to_sri(ABC_NIX32).unwrap(), ABC_SRI);
        assert_eq!(to_sri(EMPTY_NIX32).unwrap(), EMPTY_SRI);
        let d = digest_of(ABC_HEX).unwrap();
        assert_eq!(nix32_decode(ABC_NIX32), Some(d));
    }

    #[test]
    fn nix32_rejects_bad_text() {
        // 'e' is not in the alphabet.
        assert_eq!(nix32_decode(&"e".repeat(52)), None);
        // The first character only has room for one bit (52 * 5 = 260 > 256).
        assert_eq!(nix32_decode(&format!("2{}", &EMPTY_NIX32[1..])), None);
    }

    #[test]
    fn every_spelling_converts_to_sri() {
        assert_eq!(to_sri(ABC_HEX).unwrap(), ABC_SRI);
        assert_eq!(to_sri(&ABC_HEX.to_uppercase()).unwrap(), ABC_SRI);
        assert_eq!(to_sri(&format!("sha256:{ABC_HEX}")).unwrap(), ABC_SRI);
        assert_eq!(to_sri(&format!("sha256:{ABC_NIX32}")).unwrap(), ABC_SRI);
        assert_eq!(to_sri(ABC_SRI).unwrap(), ABC_SRI);
        assert_eq!(to_sri(ABC_SRI.trim_end_matches('=')).unwrap(), ABC_SRI);
        assert_eq!(to_sri(&ABC_SRI[7..]).unwrap(), ABC_SRI);
        assert_eq!(to_hex(ABC_SRI).unwrap(), ABC_HEX);
    }

    #[test]
    fn other_algorithms_and_garbage_are_refused() {
        let e = to_sri("sha512-AAAA").unwrap_err();
        assert!(e.contains("sha512"), "{e}");
        assert!(to_sri("").is_err());
        assert!(to_sri("sha256-AAAA").is_err());
        assert!(to_sri(&"g".repeat(64)).is_err());
    }
}
