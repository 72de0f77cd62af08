//! The certificate authority that signs one leaf certificate per host.
//!
//! Behind one method, [`Authority::server_config`], with a cache in front:
//! a client's tunnel to a host costs one signature the first time and a map
//! lookup after. The CA key stays in memory; it is never written anywhere.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("reading the CA file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "the CA in {cert} / {key} cannot be used: {reason} (the certificate must be PEM, the key PKCS#8 PEM)"
    )]
    Load {
        cert: String,
        key: String,
        reason: String,
    },
    #[error("making a certificate for {host}: {reason}")]
    Leaf { host: String, reason: String },
    #[error("generating the CA: {0}")]
    Generate(String),
}

/// Versions offered to clients, best first.
const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// Leaf certificates kept: far more hosts than a build talks to.
pub const LEAF_CACHE: usize = 1024;
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    /// One key for every leaf: generating a key per host buys nothing for a
    /// CA that lives as long as the run.
    leaf_key: KeyPair,
    cache: Mutex<HashMap<String, Arc<ServerConfig>>>,
}

impl Authority {
    /// A fresh CA for this run.
    pub fn generate() -> Result<Self, CaError> {
        let key = KeyPair::generate().map_err(|e| CaError::Generate(e.to_string()))?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "buildproxy CA (per run)");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "buildproxy");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(365);
        params.serial_number = Some(random_serial());
        let cert = params
            .self_signed(&key)
            .map_err(|e| CaError::Generate(e.to_string()))?;
        let cert_pem = cert.pem();
        let cert_der = cert.der().clone();
        Self::from_parts(Issuer::new(params, key), cert_pem, cert_der)
    }

    /// A CA the user keeps (installed system-wide, or shared by benchmarks).
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, CaError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| CaError::Read {
                path: p.display().to_string(),
                source,
            })
        };
        let (cert_pem, key_pem) = (read(cert_path)?, read(key_path)?);
        let fail = |reason: String| CaError::Load {
            cert: cert_path.display().to_string(),
            key: key_path.display().to_string(),
            reason,
        };
        let key = KeyPair::from_pem(&key_pem).map_err(|e| fail(e.to_string()))?;
        let cert_der = rustls_pemfile::certs(&mut cert_pem.as_bytes())
            .next()
            .ok_or_else(|| fail("no certificate found".into()))?
            .map_err(|e| fail(e.to_string()))?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| fail(e.to_string()))?;
        Self::from_parts(issuer, cert_pem, cert_der)
    }

    fn from_parts(
        issuer: Issuer<'static, KeyPair>,
        cert_pem: String,
        cert_der: CertificateDer<'static>,
    ) -> Result<Self, CaError> {
        let leaf_key = KeyPair::generate().map_err(|e| CaError::Generate(e.to_string()))?;
        Ok(Self {
            issuer,
            cert_pem,
            cert_der,
            leaf_key,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The CA certificate, PEM: what clients must trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The TLS configuration to present to a client that wants `host` (a DNS
    /// name or an IP literal, without port or brackets).
    pub fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, CaError> {
        let host = host.to_ascii_lowercase();
        if let Some(config) = self.cache.lock().unwrap().get(&host) {
            return Ok(config.clone());
        }
        let config = Arc::new(self.make_config(&host)?);
        // Two first requests for one host may both sign; either result is fine.
        let mut cache = self.cache.lock().unwrap();
        // Bounded: a client naming thousands of hosts must not grow us
        // without end. Past the cap one leaf is dropped (and re-signed if
        // asked for again).
        if cache.len() >= LEAF_CACHE && !cache.contains_key(&host) {
            let victim = cache.keys().next().cloned();
            if let Some(v) = victim {
                cache.remove(&v);
            }
        }
        cache.entry(host).or_insert(config.clone());
        Ok(config)
    }

    fn make_config(&self, host: &str) -> Result<ServerConfig, CaError> {
        let leaf_err = |reason: String| CaError::Leaf {
            host: host.to_string(),
            reason,
        };
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, host);
        params.subject_alt_names = vec![match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                host.to_string()
                    .try_into()
                    .map_err(|e: rcgen::Error| leaf_err(e.to_string()))?,
            ),
        }];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        // Back-dated so a client whose clock is a little behind accepts it.
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::minutes(1);
        params.not_after = now + Duration::days(30);
        params.serial_number = Some(random_serial());
        let cert = params
            .signed_by(&self.leaf_key, &self.issuer)
            .map_err(|e| leaf_err(e.to_string()))?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.leaf_key.serialize_der()));
        let mut config = ServerConfig::builder_with_provider(super::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| leaf_err(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone(), self.cert_der.clone()], key)
            .map_err(|e| leaf_err(e.to_string()))?;
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        // The proxy's order (see `tls::provider`), not the client's.
        config.ignore_client_order = true;
        Ok(config)
    }
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .expect("the system random source failed");
    bytes[0] &= 0x7f; // positive
    SerialNumber::from_slice(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_leaf_per_host_is_cached() {
        let ca = Authority::generate().unwrap();
        let a = ca.server_config("example.org").unwrap();
        let b = ca.server_config("EXAMPLE.org").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let c = ca.server_config("other.example").unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
    }

    /// Issue 16, row 10: thousands of SNI names do not grow the cache
    /// past its cap; a host asked for again is served.
    #[test]
    fn the_leaf_cache_is_bounded() {
        let ca = Authority::generate().unwrap();
        for i in 0..LEAF_CACHE + 50 {
            ca.server_config(&format!("h{i}.example")).unwrap();
        }
        assert_eq!(ca.cache.lock().unwrap().len(), LEAF_CACHE);
        ca.server_config("h0.example").unwrap();
    }

    #[test]
    fn ip_literals_get_an_ip_san_and_offer_h2() {
        let ca = Authority::generate().unwrap();
        let config = ca.server_config("127.0.0.1").unwrap();
        assert_eq!(config.alpn_protocols[0], b"h2");
        let v6 = ca.server_config("::1");
        assert!(v6.is_ok());
    }

    #[test]
    fn a_loaded_ca_signs_like_a_generated_one() {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("ca.key"), key.serialize_pem()).unwrap();
        let ca = Authority::load(&dir.path().join("ca.pem"), &dir.path().join("ca.key")).unwrap();
        ca.server_config("example.org").unwrap();
    }

    #[test]
    fn a_missing_ca_file_names_the_path() {
        let err = Authority::load(Path::new("/nonexistent/ca.pem"), Path::new("/x"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }
}
