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
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}
