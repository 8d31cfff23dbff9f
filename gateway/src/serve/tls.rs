//! TLS termination (rustls, ring) for the API and WebSocket ports: HTTPS and WSS from a
//! certificate chain and private key in PEM files (`[tls]`). Off unless both are configured; the
//! health and metrics ports stay plain (probes and scrapes come from inside).

use std::{path::PathBuf, sync::Arc};

use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
use serde::{Deserialize, Serialize};
use tokio_rustls::TlsAcceptor;

use crate::field_check::InvalidField;

/// Where the certificate and key come from (`[tls]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the certificate chain, leaf first. Default: none (plain HTTP).
    pub cert_path: Option<PathBuf>,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1). Default: none.
    pub key_path: Option<PathBuf>,
}

impl TlsConfig {
    /// Whether TLS is configured.
    pub fn enabled(&self) -> bool {
        self.cert_path.is_some()
    }

    /// Checks the `[tls]` section: both paths are given, or neither.
    pub fn check(&self) -> Result<(), InvalidField> {
        if self.cert_path.is_some() != self.key_path.is_some() {
            return Err(InvalidField::new(
                "tls",
                "cert_path and key_path go together",
            ));
        }
        Ok(())
    }
}

/// Why TLS cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the certificate and key (for example, they do not match).
    #[error("the certificate and key are not usable: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The acceptor for `config`, or `None` when TLS is off. Offers HTTP/2 and HTTP/1.1 by ALPN.
pub fn acceptor(config: &TlsConfig) -> Result<Option<TlsAcceptor>, TlsError> {
    let (Some(cert_path), Some(key_path)) = (&config.cert_path, &config.key_path) else {
        return Ok(None);
    };
    let pem_error = |path: &PathBuf, reason: String| TlsError::Pem {
        path: path.clone(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(|error| pem_error(cert_path, error.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|error| pem_error(cert_path, error.to_string()))?;
    if certs.is_empty() {
        return Err(pem_error(cert_path, "no certificate in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|error| pem_error(key_path, error.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(server))))
}
