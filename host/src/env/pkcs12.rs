//! A PKCS#12 truststore (RFC 7292) holding only trusted certificates: the
//! keystore type every JVM reads with no extra provider, and the one
//! `javax.net.ssl.trustStore` needs (a JVM does not read PEM bundles).
//!
//! Only what a truststore needs is written: one unencrypted safe of
//! certificate bags, no keys, no MAC. Without a MAC the store is read with
//! no password (JDK and Bouncy Castle alike; Bouncy Castle rejects a
//! password given for a store that has no MAC), and a MAC would protect
//! nothing here: the file holds public certificates, in a directory only
//! the user can write.

/// `1.2.840.113549.1.7.1`: PKCS#7 data.
const DATA: &[u64] = &[1, 2, 840, 113549, 1, 7, 1];
/// `1.2.840.113549.1.12.10.1.3`: a PKCS#12 certificate bag.
const CERT_BAG: &[u64] = &[1, 2, 840, 113549, 1, 12, 10, 1, 3];
/// `1.2.840.113549.1.9.22.1`: the bag holds an X.509 certificate.
const X509_CERTIFICATE: &[u64] = &[1, 2, 840, 113549, 1, 9, 22, 1];
/// `1.2.840.113549.1.9.20`: friendlyName, which Java shows as the alias.
const FRIENDLY_NAME: &[u64] = &[1, 2, 840, 113549, 1, 9, 20];
/// `2.16.840.1.113894.746875.1.1`: Oracle's trusted-key-usage attribute.
/// A JDK ignores a certificate bag without it (a certificate that belongs
/// to no key is not a trust anchor unless this says so).
const ORACLE_TRUSTED_KEY_USAGE: &[u64] = &[2, 16, 840, 1, 113894, 746875, 1, 1];
/// `2.5.29.37.0`: anyExtendedKeyUsage, i.e. trusted for every purpose.
const ANY_EXTENDED_KEY_USAGE: &[u64] = &[2, 5, 29, 37, 0];

/// The DER bytes of a truststore that trusts each `(alias, DER certificate)`.
pub fn truststore<'a>(certs: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Vec<u8> {
    let bags: Vec<Vec<u8>> = certs
        .into_iter()
        .map(|(alias, der)| cert_bag(alias, der))
        .collect();
    let safe_contents = seq(&bags);
    let authenticated_safe = seq(&[content_info(&safe_contents)]);
    // PFX: version 3, the authenticated safe, no macData.
    seq(&[integer(3), content_info(&authenticated_safe)])
}

fn cert_bag(alias: &str, der: &[u8]) -> Vec<u8> {
    let cert = seq(&[oid(X509_CERTIFICATE), explicit0(&octets(der))]);
    let attributes = set(vec![
        seq(&[oid(FRIENDLY_NAME), set(vec![bmp_string(alias)])]),
        seq(&[
            oid(ORACLE_TRUSTED_KEY_USAGE),
            set(vec![oid(ANY_EXTENDED_KEY_USAGE)]),
        ]),
    ]);
    seq(&[oid(CERT_BAG), explicit0(&cert), attributes])
}

/// ContentInfo of type data: `content [0] EXPLICIT OCTET STRING`.
fn content_info(inner: &[u8]) -> Vec<u8> {
    seq(&[oid(DATA), explicit0(&octets(inner))])
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

/// DER orders the members of a SET OF by their encodings.
fn set(mut parts: Vec<Vec<u8>>) -> Vec<u8> {
    parts.sort();
    tlv(0x31, &parts.concat())
}

fn octets(b: &[u8]) -> Vec<u8> {
    tlv(0x04, b)
}

fn explicit0(inner: &[u8]) -> Vec<u8> {
    tlv(0xA0, inner)
}

fn integer(v: u8) -> Vec<u8> {
    assert!(v < 0x80, "small non-negative integers only");
    tlv(0x02, &[v])
}

fn bmp_string(s: &str) -> Vec<u8> {
    let utf16: Vec<u8> = s.encode_utf16().flat_map(u16::to_be_bytes).collect();
    tlv(0x1E, &utf16)
}

fn oid(arcs: &[u64]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut push = |mut v: u64| {
        let mut groups = vec![(v & 0x7F) as u8];
        v >>= 7;
        while v > 0 {
            groups.push(0x80 | (v & 0x7F) as u8);
            v >>= 7;
        }
        body.extend(groups.iter().rev());
    };
    push(arcs[0] * 40 + arcs[1]);
    for &arc in &arcs[2..] {
        push(arc);
    }
    tlv(0x06, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oids_encode_as_der() {
        assert_eq!(
            oid(DATA),
            [
                0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x01
            ]
        );
        assert_eq!(
            oid(ORACLE_TRUSTED_KEY_USAGE),
            [
                0x06, 0x0C, 0x60, 0x86, 0x48, 0x01, 0x86, 0xF9, 0x66, 0xAD, 0xCA, 0x7B, 0x01, 0x01
            ]
        );
        assert_eq!(
            oid(ANY_EXTENDED_KEY_USAGE),
            [0x06, 0x04, 0x55, 0x1D, 0x25, 0x00]
        );
    }

    #[test]
    fn long_lengths_use_the_fewest_bytes() {
        assert_eq!(&tlv(0x04, &[0; 0x7F])[..2], [0x04, 0x7F]);
        assert_eq!(&tlv(0x04, &[0; 0x80])[..3], [0x04, 0x81, 0x80]);
        assert_eq!(&tlv(0x04, &[0; 0x1234])[..4], [0x04, 0x82, 0x12, 0x34]);
    }

    #[test]
    fn every_certificate_becomes_a_trusted_bag_with_its_alias() {
        let store = truststore([("one", &b"cert-1"[..]), ("two", &b"cert-2"[..])]);
        assert_eq!(&store[..1], [0x30]);
        let find = |needle: &[u8]| store.windows(needle.len()).filter(|w| *w == needle).count();
        assert_eq!(find(&oid(CERT_BAG)), 2);
        assert_eq!(find(&oid(ORACLE_TRUSTED_KEY_USAGE)), 2);
        assert_eq!(find(&octets(b"cert-1")), 1);
        assert_eq!(find(&bmp_string("two")), 1);
    }
}
