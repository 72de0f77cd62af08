//! The client side: which roots an upstream certificate is checked against.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

#[derive(Debug, thiserror::Error)]
pub enum UpstreamTlsError {
    #[error("reading --upstream-ca {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("--upstream-ca {path} holds no PEM certificate")]
    Empty { path: String },
    #[error("--upstream-ca {path}: certificate rejected: {reason}")]
    Bad { path: String, reason: String },
}

/// The system roots (which honour `SSL_CERT_FILE` and `SSL_CERT_DIR`) plus
/// every extra CA the user named.
pub fn roots(
    extra: &[PathBuf],
) -> Result<(RootCertStore, Vec<CertificateDer<'static>>), UpstreamTlsError> {
    let mut store = RootCertStore::empty();
    let mut all = Vec::new();
    let native = rustls_native_certs::load_native_certs();
    for err in &native.errors {
        tracing::debug!("system roots: {err}");
    }
    for cert in native.certs {
        if store.add(cert.clone()).is_ok() {
            all.push(cert);
        }
    }
    for path in extra {
        let shown = path.display().to_string();
        let pem = std::fs::read(path).map_err(|source| UpstreamTlsError::Read {
            path: shown.clone(),
            source,
        })?;
        let mut found = false;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| UpstreamTlsError::Bad {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
            store.add(cert.clone()).map_err(|e| UpstreamTlsError::Bad {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
            all.push(cert);
            found = true;
        }
        if !found {
            return Err(UpstreamTlsError::Empty { path: shown });
        }
    }
    Ok((store, all))
}

/// ALPN is left to the connector, which offers h2 and HTTP/1.1.
pub fn client_config(roots: RootCertStore) -> ClientConfig {
    ClientConfig::builder_with_provider(super::provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// A client that checks the handshake's signatures but not who signed the
/// certificate: for fixed-output fetchers only, whose output Nix checks
/// against its hash, so the server's identity adds nothing. nixpkgs'
/// `fetchurl` does the same (`--insecure`) when it is given no CA bundle.
pub fn unverified_client_config() -> ClientConfig {
    let provider = super::provider();
    ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth()
}

#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
